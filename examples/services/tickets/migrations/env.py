"""Alembic's entry point for the tickets database: its models' tables and its outbox."""

from ticketing_common.alembic import run_migrations
from tickets.models import Base

run_migrations(Base.metadata)
