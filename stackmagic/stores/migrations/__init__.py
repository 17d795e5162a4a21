"""Schema migrations of the metadata store (Alembic); a new revision for every change of models.py."""
