"""Alembic's entry point for the payments database: its models' tables and its outbox."""

from payments.models import Base
from ticketing_common.alembic import run_migrations

run_migrations(Base.metadata)
