"""Alembic's entry point for the orders database: its models' tables and its outbox."""

from orders.models import Base
from ticketing_common.alembic import run_migrations

run_migrations(Base.metadata)
