"""A run is shown running while its process may live, wherever that is, and failed once it is gone.

Containers on one machine may share a host name while each numbers its processes
apart (a PID namespace each): a run's PID is looked up only where it names the same
process, and elsewhere only a silent heartbeat tells a run is abandoned. Each test
runs once per backend: SQLite, MariaDB and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from namespaces import unshare
from sqlalchemy import update
from test_metadata_store import metadata, new_run, store_url  # noqa: F401 - fixtures

from stackmagic.run_view import runs_table
from stackmagic.stores.metadata import MetadataStore, this_runner
from stackmagic.stores.models import Run, StepRun, utcnow

TESTS = Path(__file__).parent


@pytest.fixture
def own_pid_namespace() -> list[str]:
    """The command that starts a process in a PID namespace of its own, on this machine."""
    return unshare("--pid", "--fork", "--kill-child", "--mount-proc", what="PID namespace")


def unused_pid() -> int:
    """A PID no process here has, which a process in another PID namespace may well have."""
    return next(pid for pid in range(30000, 300, -1) if not Path(f"/proc/{pid}").exists())


def test_a_live_run_in_another_pid_namespace_is_running_until_its_heartbeat_stops(
    store_url: str,
    own_pid_namespace: list[str],
) -> None:
    pid = unused_pid()
    holder = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from test_metadata_store import new_run
        from stackmagic.stores.metadata import MetadataStore
        store = MetadataStore({store_url!r})
        new_run(store, "boxed")
        store.step_started("boxed", "load", code_key="c", attempt=1)
        print("started", os.getpid(), flush=True)
        with store.keeping_alive("boxed"):
            time.sleep(600)
    """)
    # the namespace's next process gets that PID: one that names no process out here
    script = f'echo {pid - 1} > /proc/sys/kernel/ns_last_pid && "$0" -c "$1"; exit $?'
    process = subprocess.Popen(
        [*own_pid_namespace, "sh", "-c", script, sys.executable, holder],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout.readline().split() == ["started", str(pid)]
        store = MetadataStore(store_url)
        assert [r.status for r in store.runs()] == ["running"], "alive in its namespace"
        assert store.run("boxed").steps[0].status == "running"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert store.run("boxed").status == "running", "gone, but its heartbeat is fresh: cannot tell"
    with store.engine.begin() as connection:  # as if two minutes had gone by in silence
        connection.execute(update(Run).values(heartbeat_at=utcnow() - timedelta(minutes=3)))
    record = store.run("boxed")
    assert record.status == "failed"
    assert record.error.startswith(
        f"abandoned: the process running it ({socket.gethostname()}:{pid}) "
        "stopped before the run ended (no heartbeat for over 120 s)"
    )
    assert [(s.name, s.status) for s in record.steps] == [("load", "failed"), ("fit", "skipped")]
    store.close()


def _elsewhere() -> dict[str, Any]:
    return {**this_runner().identity(), "pid_namespace": "pid:[1]"}


def _reused() -> dict[str, Any]:
    here = this_runner().identity()
    return {**here, "started": here["started"] - 1}


@pytest.mark.parametrize(
    ("case", "pid", "identity", "silent_for", "status"),
    [
        ("another namespace, heard from", unused_pid, _elsewhere, timedelta(seconds=5), "running"),
        ("another namespace, silent", unused_pid, _elsewhere, timedelta(minutes=3), "failed"),
        ("older stackmagic, heard from", unused_pid, lambda: None, timedelta(seconds=5), "running"),
        ("here, PID taken by a later process", os.getpid, _reused, timedelta(seconds=5), "failed"),
        (
            "here, alive but silent",
            os.getpid,
            lambda: this_runner().identity(),
            timedelta(minutes=3),
            "running",
        ),
    ],
)
def test_a_pid_counts_only_where_it_names_the_same_process(
    metadata: MetadataStore,
    case: str,
    pid,
    identity,
    silent_for: timedelta,
    status: str,
) -> None:
    new_run(metadata, "r")
    with metadata.engine.begin() as connection:
        connection.execute(
            update(Run).values(
                runner=f"{socket.gethostname()}:{pid()}",
                runner_identity=identity(),
                heartbeat_at=utcnow() - silent_for,
            )
        )
    assert metadata.run("r").status == status, case


def test_an_abandoned_run_took_until_its_last_heartbeat(metadata: MetadataStore) -> None:
    new_run(metadata, "lost")
    metadata.step_started("lost", "load", code_key="c", attempt=1)
    started = utcnow() - timedelta(minutes=10)
    with metadata.engine.begin() as connection:  # its step began after the last heartbeat
        connection.execute(
            update(Run).values(
                runner="another-machine:4242",
                runner_identity=None,
                started_at=started,
                heartbeat_at=started + timedelta(seconds=40),
            )
        )
        connection.execute(update(StepRun).values(started_at=started + timedelta(seconds=50)))
    [record] = metadata.runs()
    assert (record.status, record.seconds) == ("failed", 40.0)
    assert runs_table([record]).rows[0][4] == "40.0 s"
    assert [(s.status, s.seconds) for s in metadata.run("lost").steps] == [
        ("failed", 0.0),
        ("skipped", None),
    ]


def test_a_run_killed_at_once_took_no_negative_time(store_url: str) -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_metadata_store import new_run
        from stackmagic.stores.metadata import MetadataStore
        store = MetadataStore({store_url!r})
        new_run(store, "brief")
        store.step_started("brief", "load", code_key="c", attempt=1)
        store.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)  # and it is gone
    store = MetadataStore(store_url)
    [record] = store.runs()
    assert record.status == "failed" and record.seconds == 0.0
    assert runs_table([record]).rows[0][4] == "0.0 s"
    assert [s.seconds for s in store.run("brief").steps] == [0.0, None]
    store.close()
