"""The metadata store's schema: migrations match the models, and old stores are upgraded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from stackmagic.errors import StackmagicError
from stackmagic.stores.metadata import MetadataStore
from stackmagic.stores.models import SCHEMA_REVISION, Base


def test_the_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    config = Config()
    config.set_main_option("script_location", "stackmagic.stores:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION, \
        "a new migration must also be the models' SCHEMA_REVISION"


def test_a_store_from_a_newer_stackmagic_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    MetadataStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as database:
        database.execute("UPDATE alembic_version SET version_num = '9999'")
    before = path.read_bytes()
    with pytest.raises(StackmagicError, match="written by a newer stackmagic"):
        MetadataStore(f"sqlite:///{path}")
    assert path.read_bytes() == before


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: p.write_text("not a database " * 100)])
def test_an_unusable_database_file_is_one_line(tmp_path: Path, make) -> None:
    path = tmp_path / "m.db"
    make(path)
    with pytest.raises(StackmagicError) as raised:
        MetadataStore(f"sqlite:///{path}", label=str(path))
    assert str(raised.value).startswith(f"cannot open the metadata store {path} (")
    assert "\n" not in str(raised.value)
