"""The metadata store's contract, held by every backend: SQLite, MariaDB and PostgreSQL.

Each test runs once per backend, against a real server and a fresh database.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text, update

from stackmagic.errors import StackmagicError
from stackmagic.flavors.metadata_stores import CONNECT_TIMEOUT_SECONDS, MySQLMetadataStore
from stackmagic.stores.artifacts import ArtifactInfo
from stackmagic.stores.metadata import MetadataStore, PreviousStep
from stackmagic.stores.models import Base, Pipeline, Run, StepStatus, utcnow

BACKENDS = ["sqlite", "mariadb", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    fixture = "mysql_database" if request.param == "mariadb" else "postgresql_database"
    return request.getfixturevalue(fixture).url


@pytest.fixture
def metadata(store_url: str) -> Iterator[MetadataStore]:
    store = MetadataStore(store_url)
    yield store
    store.close()


def new_run(
    store: MetadataStore,
    run_id: str,
    *,
    pipeline: str = "train",
    steps=("load", "fit"),
    parameters=None,
    overridden=(),
) -> None:
    store.create_run(
        run_id=run_id,
        pipeline=pipeline,
        notebook="train.ipynb",
        stack_name="team",
        stack={"orchestrator": {"flavor": "local"}},
        bundle_uri="s3://b/_bundles/h.zip",
        bundle_hash="h" * 64,
        options={"no_cache": False},
        parameters=parameters or {},
        overridden=list(overridden),
        steps=list(steps),
    )


def artifact(name: str, content: str = "c") -> ArtifactInfo:
    return ArtifactInfo(
        uri=f"s3://b/train/{name}.json",
        materializer="json",
        content_hash=content * 64,
        size=12,
        type_name="builtins.dict",
    )


def complete(
    store: MetadataStore,
    run_id: str,
    step: str,
    *,
    key: str = "k",
    inputs=None,
    outputs=None,
    metrics=(),
) -> None:
    store.step_started(run_id, step, code_key="code", attempt=1)
    store.step_completed(
        run_id,
        step,
        code_key="code",
        cache_key=key,
        inputs=inputs or {},
        outputs=outputs or {},
        metrics=list(metrics),
        notebook_uri=f"nb/{step}",
    )


# --- schema ----------------------------------------------------------------------------------


def test_migrations_build_exactly_the_models(metadata: MetadataStore) -> None:
    with metadata.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_store_from_a_newer_stackmagic_is_refused_untouched(store_url: str) -> None:
    MetadataStore(store_url).close()
    store = MetadataStore(store_url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StackmagicError, match="written by a newer stackmagic"):
        MetadataStore(store_url)
    engine = create_engine(store_url)  # a look without stackmagic, which would refuse to open it
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
        )
    engine.dispose()


def _open_and_close(url: str) -> str:
    try:
        MetadataStore(url).close()
        return "ok"
    except Exception as error:  # reported to the parent, which shows it
        return f"{type(error).__name__}: {error}"


def test_processes_opening_a_new_store_at_once_build_it_once(store_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(_open_and_close, [store_url] * 6)
    assert results == ["ok"] * 6
    store = MetadataStore(store_url)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    store.close()


# --- runs and step runs ------------------------------------------------------------------------


def test_a_run_reads_back_as_it_was_written(metadata: MetadataStore) -> None:
    parameters = {"lr": 0.001, "layers": [64, 32], "name": "é — 模型", "nothing": None}
    new_run(metadata, "20261127-090000-aaaaaa", parameters=parameters, overridden=["lr"])
    complete(
        metadata,
        "20261127-090000-aaaaaa",
        "load",
        outputs={"rows": artifact("rows")},
        metrics=[("rows", 1e6), ("precise", 0.123456789012345)],
    )
    loaded = metadata.step_outputs("20261127-090000-aaaaaa", "load")
    complete(
        metadata,
        "20261127-090000-aaaaaa",
        "fit",
        inputs={"rows": loaded["rows"]},
        outputs={"model": artifact("model", "m")},
    )
    metadata.run_finished("20261127-090000-aaaaaa")

    record = metadata.run("20261127-090000-aaaaaa")
    assert record.status == "completed" and record.error is None
    assert record.parameters == parameters and record.overridden == ["lr"]
    assert record.stack == {"orchestrator": {"flavor": "local"}}
    assert [step.name for step in record.steps] == ["load", "fit"]
    load, fit = record.steps
    assert load.metrics == [("rows", 1e6), ("precise", 0.123456789012345)]
    assert load.outputs == {"rows": artifact("rows")}
    assert fit.inputs == {"rows": artifact("rows")} and fit.outputs == {
        "model": artifact("model", "m")
    }
    assert load.started_at <= load.ended_at <= fit.started_at <= fit.ended_at <= record.ended_at
    assert record.started_at.tzinfo is not None and record.seconds >= 0


def test_long_errors_and_large_parameters_are_kept_whole(metadata: MetadataStore) -> None:
    big = list(range(20_000))  # ~110 kB of JSON: more than MySQL's TEXT holds
    new_run(metadata, "r1", parameters={"ids": big})
    metadata.step_started("r1", "load", code_key="c", attempt=1)
    error = "ValueError: " + "x" * 100_000
    metadata.step_failed("r1", "load", error=error, notebook_uri=None, inputs={})
    metadata.run_finished("r1", error=error)
    record = metadata.run("r1")
    assert record.parameters["ids"] == big
    assert record.step("load").error == error and record.error == error
    assert record.step("fit").status == StepStatus.SKIPPED


def test_a_step_still_running_when_its_run_fails_is_failed_not_skipped(
    metadata: MetadataStore,
) -> None:
    new_run(metadata, "r1", steps=("load", "fit", "report"))
    complete(metadata, "r1", "load")
    metadata.step_started("r1", "fit", code_key="c", attempt=1)  # and its process broke off
    metadata.run_finished("r1", error="step 'fit' failed: the artifact store failed")
    record = metadata.run("r1")
    assert [(s.name, s.status) for s in record.steps] == [
        ("load", "completed"),
        ("fit", "failed"),
        ("report", "skipped"),
    ]
    assert record.step("fit").error == "step 'fit' failed: the artifact store failed"
    assert record.step("fit").seconds is not None


def test_cache_hits_are_newest_first_and_never_the_asking_run(metadata: MetadataStore) -> None:
    for run_id in ("r1", "r2", "r3"):
        new_run(metadata, run_id, steps=["load"])
        complete(
            metadata,
            run_id,
            "load",
            key="same-key",
            outputs={"rows": artifact("rows")},
            metrics=[("rows", 3.0)],
        )
    hits = list(metadata.cache_hits("same-key", other_than="r3"))
    assert [hit.run_id for hit in hits] == ["r2", "r1"]
    assert hits[0].outputs["rows"].info == artifact("rows")
    assert list(metadata.cache_hits("other-key", other_than="r3")) == []
    assert metadata.has_code_key("code") and not metadata.has_code_key("nope")

    new_run(metadata, "r4", steps=["load"])
    metadata.step_cached(
        "r4", "load", code_key="code", cache_key="same-key", hit=hits[0], inputs={}
    )
    cached = metadata.run("r4").step("load")
    assert cached.status == "cached" and cached.cached_from == "r2/load"
    assert cached.metrics == [("rows", 3.0)] and cached.outputs == {"rows": artifact("rows")}


def test_last_time_is_the_newest_step_run_with_outputs_of_that_pipeline(
    metadata: MetadataStore,
) -> None:
    parts = {
        "code": [[7, "a" * 64]],
        "parameters": {"seed": "b" * 64},
        "files": {"é.csv": "c" * 64},
    }
    new_run(metadata, "r1", steps=["load"])
    metadata.step_started("r1", "load", code_key="c", attempt=1, parts=parts, reason="first run")
    metadata.step_completed(
        "r1",
        "load",
        code_key="c",
        cache_key="k",
        inputs={},
        outputs={},
        metrics=[],
        notebook_uri="nb",
    )
    new_run(metadata, "r2", steps=["load"])  # failed: not what a user calls last time
    metadata.step_started("r2", "load", code_key="c", attempt=1, parts={}, reason="--no-cache")
    metadata.step_failed("r2", "load", error="boom", notebook_uri=None, inputs={})
    new_run(metadata, "other", pipeline="other", steps=["load"])
    complete(metadata, "other", "load")
    new_run(metadata, "r3", steps=["load"])

    assert metadata.previous_step("train", "load", other_than="r3") == PreviousStep("r1", parts)
    assert metadata.previous_step("train", "load", other_than="r1") is None
    assert metadata.previous_step("train", "fit", other_than=None) is None
    assert metadata.previous_step("other", "load", other_than=None) == PreviousStep("other", None)
    assert [metadata.run(run).step("load").reason for run in ("r1", "r2", "other")] == [
        "first run",
        "--no-cache",
        None,
    ]


def test_a_retried_step_replaces_what_it_left_before(metadata: MetadataStore) -> None:
    new_run(metadata, "r1", steps=["load"])
    complete(metadata, "r1", "load", outputs={"a": artifact("a")}, metrics=[("m", 1.0)])
    complete(metadata, "r1", "load", outputs={"b": artifact("b")}, metrics=[("m", 2.0)])
    step = metadata.run("r1").step("load")
    assert step.outputs == {"b": artifact("b")} and step.metrics == [("m", 2.0)]


def test_runs_are_listed_newest_first_by_pipeline(metadata: MetadataStore) -> None:
    for number in range(5):
        new_run(metadata, f"run-{number}", pipeline="train" if number % 2 else "etl")
    assert [r.id for r in metadata.runs(limit=3)] == ["run-4", "run-3", "run-2"]
    assert [r.id for r in metadata.runs(pipeline="train")] == ["run-3", "run-1"]
    assert metadata.runs(pipeline="nope") == []


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        ("20261127-1", "20261127-1_a%"),
        ("latest", "20261127-2"),
        ("20261127-1_", "20261127-1_a%"),
    ],
)
def test_runs_are_found_by_a_unique_beginning(
    metadata: MetadataStore, asked: str, found: str
) -> None:
    new_run(metadata, "20261127-1_a%")
    new_run(metadata, "20261127-2")
    assert metadata.run(asked).id == found


@pytest.mark.parametrize(
    ("asked", "problem"),
    [("2026", "matches several runs"), ("1%", "names no run"), ("x_", "names no run")],
)
def test_ambiguous_or_unknown_run_ids_are_one_line(
    metadata: MetadataStore, asked: str, problem: str
) -> None:
    new_run(metadata, "20261127-1")
    new_run(metadata, "20261127-2")
    new_run(metadata, "x1")
    with pytest.raises(StackmagicError, match=problem) as raised:
        metadata.run(asked)
    assert "\n" not in str(raised.value)


def _write_runs(url: str, worker: int) -> int:
    store = MetadataStore(url)
    for number in range(5):
        new_run(store, f"w{worker}-{number}", pipeline="shared")
        complete(store, f"w{worker}-{number}", "load", outputs={"x": artifact("x")})
        store.run_finished(f"w{worker}-{number}")
    store.close()
    return worker


def test_concurrent_writers_of_one_new_pipeline_lose_nothing(store_url: str) -> None:
    MetadataStore(store_url).close()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.starmap(_write_runs, [(store_url, w) for w in range(4)])) == [0, 1, 2, 3]
    store = MetadataStore(store_url)
    runs = store.runs(pipeline="shared", limit=100)
    assert len(runs) == 20 and {r.status for r in runs} == {"completed"}
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Pipeline)).scalar() == 1
    store.close()


# --- runs whose process died ---------------------------------------------------------------------


def test_a_run_whose_process_was_killed_is_shown_failed(store_url: str, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_metadata_store import new_run
        from stackmagic.stores.metadata import MetadataStore
        store = MetadataStore({store_url!r})
        new_run(store, "doomed")
        store.step_started("doomed", "load", code_key="c", attempt=1)
        print("started", flush=True)
        with store.keeping_alive("doomed"):
            time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "started"
        store = MetadataStore(store_url)
        assert store.run("doomed").status == "running"  # alive: left alone
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    record = store.run("doomed")
    assert record.status == "failed" and record.error.startswith(
        "abandoned: the process running it"
    )
    assert [(s.name, s.status) for s in record.steps] == [("load", "failed"), ("fit", "skipped")]
    assert [r.status for r in store.runs()] == ["failed"]
    store.close()


@pytest.mark.parametrize(
    ("silent_for", "status"), [(timedelta(minutes=5), "failed"), (timedelta(seconds=5), "running")]
)
def test_a_run_driven_elsewhere_fails_when_its_heartbeat_stops(
    metadata: MetadataStore, silent_for: timedelta, status: str
) -> None:
    new_run(metadata, "remote")
    with metadata.engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.id == "remote")
            .values(
                runner="another-machine:4242",
                runner_identity=None,
                heartbeat_at=utcnow() - silent_for,
            )
        )
    assert metadata.run("remote").status == status


def test_a_finished_run_is_never_marked_abandoned(metadata: MetadataStore) -> None:
    new_run(metadata, "done")
    metadata.run_finished("done")
    with metadata.engine.begin() as connection:
        connection.execute(update(Run).values(runner="another-machine:1", heartbeat_at=None))
    assert metadata.fail_abandoned_runs() == []
    assert metadata.run("done").status == "completed"


def test_a_running_pipeline_beats_its_heartbeat(
    metadata: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stackmagic.stores.metadata.runs.HEARTBEAT_SECONDS", 0.05)
    new_run(metadata, "alive")
    with metadata.engine.begin() as connection:  # as if it had last beaten long ago, elsewhere
        connection.execute(
            update(Run)
            .where(Run.id == "alive")
            .values(
                runner="another-machine:4242",
                runner_identity=None,
                heartbeat_at=utcnow() - timedelta(minutes=5),
            )
        )
    with metadata.keeping_alive("alive"):
        time.sleep(0.5)
    assert metadata.run("alive").status == "running", "its heartbeat is fresh: not abandoned"


def test_queries_may_outlast_the_connect_timeout(mysql_database) -> None:
    """The 10 s read timeout guards the handshake only: a long query (a migration) goes on."""
    config = MySQLMetadataStore(
        host=mysql_database.host,
        port=mysql_database.port,
        username=mysql_database.username,
        database=mysql_database.database,
    )
    store = config.open(lambda option: "")
    with store.engine.connect() as connection:
        assert (
            connection.execute(text(f"SELECT SLEEP({CONNECT_TIMEOUT_SECONDS + 1})")).scalar() == 0
        )
    store.close()
