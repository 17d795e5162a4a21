"""Schedules: a pipeline on a cron, its runs recorded with the schedule's name.

The local orchestrator refuses, printing the crontab line that would do it
(run here as cron would run it). On Kubeflow a schedule is a KFP recurring
run, made through the real ``kfp.Client`` on tests/fake_kfp.py, a FAKE KFP
API server as strict as KFP's on recurring runs; firing it runs the pipeline
with kfp.local against MariaDB and the S3 emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import wait_for
from fake_http import requests_text
from fake_kfp import FakeKfp
from services import DB_CANARY, S3_CANARY
from test_kubeflow import TOKEN_CANARY, fake_kfp, kubeflow_notebook  # noqa: F401 - fixtures
from test_metadata_store import metadata, new_run, store_url  # noqa: F401 - fixtures

from notebooks import write_notebook
from stackmagic.cron import parse_cron
from stackmagic.errors import NotFound, StackmagicError
from stackmagic.schedules import check_cron
from stackmagic.stores.metadata import MetadataStore

pytestmark = pytest.mark.kernel


def test_cron_is_five_fields_checked_in_one_line() -> None:
    assert check_cron("  0  3 * *   MON-FRI ") == "0 3 * * MON-FRI"
    assert check_cron("@daily") == "0 0 * * *"
    # the next run, as the engines read a day and a weekday: either, when both restrict
    monday = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    for cron, day in (("0 3 1 * MON", 1), ("0 3 */2 * MON", 1), ("0 3 */1 * MON", 7)):
        next_run = parse_cron(cron).next_after(monday)
        assert next_run == datetime(2026, 12, day, 3, tzinfo=timezone.utc), cron
    for wrong, said in (
        ("0 3 * *", 'cron "0 3 * *" has 4 fields'),
        ("0 0 3 * * *", "has 6 fields"),
        ("0 24 * * *", "hour 24 is not in 0-23"),
        ("0 3 * * 7", "weekday 7 is not in 0-6 (0 is Sunday)"),
        ("*/0 * * * *", "the minute step must be 1 or more"),
        ("0 0 30 2 *", "never matches a date"),
    ):
        with pytest.raises(Exception) as refused:
            check_cron(wrong)
        assert said in str(refused.value), wrong


def test_schedules_are_recorded_with_the_last_run_each_started(
    metadata: MetadataStore,  # noqa: F811 - the fixture, on SQLite, MariaDB and PostgreSQL
) -> None:
    for name, cron in (("nightly", "0 3 * * *"), ("weekly", "0 4 * * 0")):
        metadata.add_schedule(
            name=name,
            pipeline="train",
            notebook="train.ipynb",
            stack_name="kf",
            orchestrator="kubeflow",
            cron=cron,
            parameters={"lr": 0.1},
            bundle_uri="s3://b/_bundles/h.zip",
            orchestrator_id=f"id-{name}",
            url="",
        )
    with pytest.raises(StackmagicError, match="there is a schedule named 'nightly' already"):
        metadata.add_schedule(**{**_fields(metadata, "nightly"), "cron": "@daily"})
    new_run(metadata, "by-hand")
    for run_id in ("first", "second"):
        metadata.create_run(**{**_run(run_id), "schedule": "nightly"})
    assert [run.schedule for run in metadata.runs()] == ["nightly", "nightly", None]
    assert [(s.name, s.cron, s.last_run) for s in metadata.schedules()] == [
        ("nightly", "0 3 * * *", "second"),
        ("weekly", "0 4 * * 0", None),
    ]
    metadata.delete_schedule("nightly")
    with pytest.raises(NotFound, match="no schedule 'nightly'"):
        metadata.schedule("nightly")
    assert metadata.run("first").schedule == "nightly", "its runs stay"


def _fields(metadata: MetadataStore, name: str) -> dict[str, object]:
    record = metadata.schedule(name)
    return {
        key: getattr(record, key)
        for key in (
            "name",
            "pipeline",
            "notebook",
            "stack_name",
            "orchestrator",
            "cron",
            "parameters",
            "bundle_uri",
            "orchestrator_id",
            "url",
        )
    }


def _run(run_id: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "pipeline": "train",
        "notebook": "train.ipynb",
        "stack_name": "kf",
        "stack": {},
        "bundle_uri": "s3://b/_bundles/h.zip",
        "bundle_hash": "h" * 64,
        "options": {},
        "parameters": {"lr": 0.1},
        "overridden": [],
        "steps": ["load"],
        "driven_here": False,
    }


def test_the_local_orchestrator_prints_the_crontab_line_that_would_run_it(
    terminal, project: Path
) -> None:
    notebook = write_notebook(
        project / "nightly.ipynb",
        "%%step greet\ngreeting = f'{name} x{times}'\nprint(greeting)",
        parameters="name = 'a'\ntimes = 1",
    )
    refused = terminal(
        "pipeline", "schedule", str(notebook), "--cron", "5 4 * * *", "-p", "name", "50% 'off'"
    )
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert "the local orchestrator 'default' of stack 'default' cannot run pipelines" in refused.err
    line = refused.err.rstrip("\n").split("(`crontab -e`; times there are the machine's): ")[1]
    assert line.startswith(f"5 4 * * * cd {project} && ")
    assert "--stack default -p name " in line and "\\%" in line, "cron reads a bare % as a newline"
    assert json.loads(terminal("pipeline", "runs", "--json").out) == [], "nothing ran"

    # as cron runs it: the command after the five fields, \% unescaped, by sh, from a bare PATH
    command = line.split(" ", 5)[5].replace("\\%", "%")
    ran = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], **_stackmagic_env()},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    [run] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert run["status"] == "completed" and run["parameters"] == {"name": "50% 'off'", "times": 1}
    assert run["schedule"] is None, "cron's runs are ordinary runs"

    bad = terminal("pipeline", "schedule", str(notebook), "--cron", "0 25 * * *")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "hour 25 is not in 0-23" in bad.err
    unnamed = write_notebook(project / "_draft.ipynb", "%%step one\nx = 1")
    for given in (["--name", "my schedule"], []):  # a name no orchestrator can use
        bad = terminal("pipeline", "schedule", str(unnamed), "--cron", "0 3 * * *", *given)
        assert bad.code == 2 and bad.err.count("\n") == 1, bad.err
        assert "a schedule's name is letters, digits" in bad.err


def _stackmagic_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("STACKMAGIC_")}


def test_a_kubeflow_schedule_is_a_recurring_run_whose_runs_carry_its_name(
    fake_kfp: FakeKfp,  # noqa: F811 - the fixture
    kubeflow_notebook: Path,  # noqa: F811 - the fixture
    terminal,
) -> None:
    notebook = write_notebook(
        kubeflow_notebook.parent / "nightly.ipynb",
        "%%step load\nfeatures = [scale * i for i in range(4)]",
        "%%step report\ntotal = sum(features)",
        parameters="scale = 2.0",
    )  # on the stack that submits to the fake KFP server: two short steps, one edge
    made = terminal(
        "pipeline", "schedule", str(notebook), "--cron", "0 3 * * *", "-p", "scale", "3", "--json"
    )
    assert made.code == 0, made.err
    schedule = json.loads(made.out)
    [recurring] = fake_kfp.recurring_runs.values()
    recurring_id = recurring["recurring_run_id"]
    assert schedule["name"] == "nightly", "named after the pipeline"
    assert schedule["orchestrator_id"] == recurring_id and schedule["orchestrator"] == "kubeflow"
    assert schedule["url"] == f"{fake_kfp.url}/#/recurringrun/details/{recurring_id}"
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}, "seconds first"
    assert recurring["runtime_config"]["parameters"] == {
        "scale": 3.0,
        "stackmagic_run": "",
        "stackmagic_no_cache": False,
        "stackmagic_only": "",
        "stackmagic_from": "",
        "stackmagic_schedule": "nightly",
    }
    assert recurring["mode"] == "ENABLE" and recurring["max_concurrency"] == "1"
    assert recurring["no_catchup"] is True and recurring["service_account"] == "pipeline-runner"
    [experiment] = fake_kfp.experiments.values()
    assert recurring["experiment_id"] == experiment["experiment_id"]
    now = datetime.now(timezone.utc)
    next_day = now.date() + timedelta(days=1 if now.hour >= 3 else 0)
    assert datetime.fromisoformat(schedule["next_run"]) == datetime(
        next_day.year, next_day.month, next_day.day, 3, tzinfo=timezone.utc
    )

    shown = terminal("pipeline", "schedule", str(notebook), "--cron", "@daily", "--name", "daily")
    assert shown.code == 0, shown.err
    assert "at 00:00 UTC every day" in shown.out and f"{fake_kfp.url}/#/recurringrun" in shown.out
    assert len(fake_kfp.versions) == 1, "the same pipeline version, uploaded once"
    taken = terminal("pipeline", "schedule", str(notebook), "--cron", "@hourly", "--name", "daily")
    assert taken.code == 2 and taken.err.count("\n") == 1, taken.err
    assert "there is a schedule named 'daily' already" in taken.err
    assert len(fake_kfp.recurring_runs) == 2

    fired = fake_kfp.fire(recurring_id)
    wait_for(lambda: fake_kfp.runs[fired["run_id"]]["state"] != "RUNNING", timeout=120)
    assert fake_kfp.runs[fired["run_id"]]["state"] == "SUCCEEDED"
    [run] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert run["schedule"] == "nightly" and run["status"] == "completed"
    assert [s["status"] for s in run["steps"]] == ["completed"] * 2
    assert run["parameters"] == {"scale": 3.0} and run["changed_parameters"] == {"scale": 3.0}
    loaded = terminal("pipeline", "load", run["id"], "report.total")
    assert "total  18.0  (builtins.float" in loaded.out, loaded.out
    table = terminal("pipeline", "runs").out.splitlines()
    assert table[1].split()[-1] == "schedule" and table[2].split()[-1] == "nightly", table
    described = terminal("pipeline", "describe", run["id"]).out
    assert "started by schedule nightly" in described

    listed = json.loads(terminal("pipeline", "schedules", "--json").out)
    assert [(s["name"], s["cron"], s["last_run"]) for s in listed] == [
        ("daily", "0 0 * * *", None),
        ("nightly", "0 3 * * *", run["id"]),
    ]
    assert f"{run['id']} (completed)" in terminal("pipeline", "schedules").out

    for name in ("nightly", "daily"):
        gone = terminal("pipeline", "unschedule", name)
        assert gone.code == 0 and f"Unscheduled {name}" in gone.out, gone.err
    assert fake_kfp.recurring_runs == {}, "deleted at the server"
    assert json.loads(terminal("pipeline", "schedules", "--json").out) == []
    again = terminal("pipeline", "unschedule", "nightly")
    assert again.code == 2 and "no schedule 'nightly'" in again.err
    assert [r["id"] for r in json.loads(terminal("pipeline", "runs", "--json").out)] == [run["id"]]

    text = requests_text(fake_kfp.requests)
    assert DB_CANARY not in text and S3_CANARY not in text, "store secrets never leave"

    # the fake refuses what KFP refuses: the body stackmagic sent, each time with one flaw
    sent = json.loads(next(r.body for r in fake_kfp.requests if r.path.endswith("/recurringruns")))
    config = sent["runtime_config"]
    for flaw, status in (
        ({"trigger": {"cron_schedule": {"cron": "0 3 * * *"}}}, 400),  # KFP: hourly, seconds first
        ({"max_concurrency": "0"}, 400),
        ({"mode": "MODE_UNSPECIFIED"}, 400),
        ({"runtime_config": {"parameters": {**config["parameters"], "lr": 0.1}}}, 400),
        ({"runtime_config": {"parameters": {**config["parameters"], "scale": "big"}}}, 400),
        ({"experiment_id": "no-such-experiment"}, 404),
    ):
        answer = fake_kfp.handle(
            "POST",
            "/apis/v2beta1/recurringruns",
            {},
            {"authorization": f"Bearer {TOKEN_CANARY}"},
            json.dumps({**sent, **flaw}).encode(),
        )
        assert answer[0] == status, (flaw, answer)
    assert fake_kfp.recurring_runs == {}
