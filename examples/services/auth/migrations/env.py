"""Alembic's entry point for the auth database: its models' tables and its outbox."""

from auth.models import Base
from ticketing_common.alembic import run_migrations

run_migrations(Base.metadata)
