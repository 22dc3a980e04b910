"""Revision files (Alembic skips this module)."""
