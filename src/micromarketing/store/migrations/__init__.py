"""Alembic migrations of the operations store (SQLite and PostgreSQL); no ``alembic.ini`` needed.

``OperationsStore.create_all`` upgrades to head.  To write a migration after changing
:mod:`micromarketing.store.models`, run ``python -m micromarketing.store.migrations revision
"what changed"``: it upgrades a scratch SQLite store to the current head and autogenerates the
difference.  ``python -m micromarketing.store.migrations regenerate`` rewrites the single
initial revision from the models (allowed while no released workspace depends on it).
"""
