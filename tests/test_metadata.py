"""The metadata store's schema: migrations match the models, and old stores are upgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from stackmagic.errors import StackmagicError
from stackmagic.stores.metadata import MetadataStore
from stackmagic.stores.models import SCHEMA_REVISION


def test_the_newest_migration_is_the_models_revision() -> None:
    config = Config()
    config.set_main_option("script_location", "stackmagic.stores:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION, (
        "a new migration must also be the models' SCHEMA_REVISION"
    )


def test_a_first_schema_store_is_upgraded_keeping_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MetadataStore(f"sqlite:///{path}")
    store.close()
    config = Config()
    config.set_main_option("script_location", "stackmagic.stores:migrations")
    with create_engine(f"sqlite:///{path}").begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO pipelines (id, name, created_at) VALUES (1, 'train', '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (id, pipeline_id, notebook, status, started_at, stack_name, stack, "
                "bundle_uri, bundle_hash, options) VALUES ('old', 1, 'nb', 'completed', "
                "'2026-01-01 00:00:00', 'default', '{}', 'b', 'h', '{}')"
            )
        )
    store = MetadataStore(f"sqlite:///{path}")
    assert [run.id for run in store.runs()] == ["old"]
    assert store.run("old").status == "completed"
    store.close()


@pytest.mark.parametrize(
    "make", [lambda p: p.mkdir(), lambda p: p.write_text("not a database " * 100)]
)
def test_an_unusable_database_file_is_one_line(tmp_path: Path, make) -> None:
    path = tmp_path / "m.db"
    make(path)
    with pytest.raises(StackmagicError) as raised:
        MetadataStore(f"sqlite:///{path}", label=str(path))
    assert str(raised.value).startswith(f"cannot open the metadata store {path} (")
    assert "\n" not in str(raised.value)
