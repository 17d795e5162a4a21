"""Where runs are kept: the artifact store (fsspec) and the metadata store (SQLAlchemy)."""
