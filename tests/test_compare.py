"""Past runs read back: the listing's columns and filters, and runs compared side by side,
in a terminal, in a real kernel and through the server's API; all over real runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the jp_* fixtures
from test_kernel import started_kernel
from test_server import api, authorizer, jp_server_config  # noqa: F401 - the server tests' setup
from tornado.httpclient import HTTPClientError

import stackmagic
from notebooks import write_notebook
from stackmagic.commands import RUN_STATUSES
from stackmagic.errors import StackmagicError
from stackmagic.stores.models import RunStatus

PARAMETERS = "lr = 0.1\nsize = 10\nname = 'base'"
#: Two steps log metrics, both one called "rows": the run's metrics name those by step.
CELLS = (
    "import stackmagic",
    "%%step prepare\nrows = list(range(size))\nstackmagic.log_metric('rows', len(rows))",
    "%%step train\nloss = 1 / (lr * len(rows))\nstackmagic.log_metric('loss', loss)\n"
    "stackmagic.log_metric('accuracy', 1 - loss)\nstackmagic.log_metric('rows', 2)",
)
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Runs:
    """A run with the notebook's defaults, then one given lr and name, and size as it was (newest)."""

    default: str
    tuned: str


def make_runs(folder: Path) -> Runs:
    notebook = write_notebook(folder / "train.ipynb", *CELLS, parameters=PARAMETERS)
    default = stackmagic.run(notebook)
    tuned = stackmagic.run(notebook, parameters={"lr": 0.5, "name": "wide", "size": 10})
    return Runs(default.id, tuned.id)


@pytest.fixture
def runs(initialised: Path) -> Runs:
    return make_runs(initialised)


def table_rows(text: str) -> list[dict[str, str]]:
    """A table the terminal printed, a row each: its cells by column, cut where headers start."""
    header, *rows = text.splitlines()[1:]
    names = header.split()
    starts = [header.index(f" {name}") + 1 for name in names]
    return [
        {
            name: row[start:end].strip()
            for name, start, end in zip(names, starts, [*starts[1:], None])
        }
        for row in rows
    ]


def test_runs_show_the_changed_parameters_and_the_first_metrics(
    runs: Runs, cli: Callable[..., Result]
) -> None:
    listed = cli("pipeline", "runs")
    assert listed.code == 0, listed.err
    tuned, default = table_rows(listed.out)
    assert list(tuned) == [
        "run",
        "pipeline",
        "status",
        "started",
        "took",
        "parameters",
        "metrics",
        "stack",
    ]
    assert (tuned["run"], default["run"]) == (runs.tuned, runs.default), "newest first"
    assert tuned["parameters"] == "lr=0.5 name=wide"
    assert tuned["metrics"] == "prepare.rows=10 loss=0.2 accuracy=0.8 (+1)"
    assert default["parameters"] == "-"
    assert default["metrics"] == "prepare.rows=10 loss=1 accuracy=0 (+1)"

    data = json.loads(cli("pipeline", "runs", "--json").out)
    assert [run["changed_parameters"] for run in data] == [{"lr": 0.5, "name": "wide"}, {}]
    assert data[0]["metrics"] == {
        "prepare.rows": 10,
        "loss": 0.2,
        "accuracy": 0.8,
        "train.rows": 2,
    }
    described = json.loads(cli("pipeline", "describe", runs.tuned, "--json").out)
    assert described["changed_parameters"] == data[0]["changed_parameters"]
    assert described["metrics"] == data[0]["metrics"]


def test_runs_are_filtered_by_status_and_limited(
    runs: Runs, initialised: Path, cli: Callable[..., Result]
) -> None:
    with pytest.raises(StackmagicError):  # size 0: train divides by zero
        stackmagic.run(initialised / "train.ipynb", parameters={"size": 0})

    def listed(*options: str) -> list[tuple[str, str]]:
        answer = cli("pipeline", "runs", *options, "--json")
        assert answer.code == 0, answer.err
        return [(run["id"], run["status"]) for run in json.loads(answer.out)]

    everything = listed("--limit", "all")
    assert [status for _, status in everything] == ["failed", "completed", "completed"]
    assert listed("--status", "completed") == everything[1:]
    assert listed("--status", "failed") == everything[:1]
    assert listed("--status", "completed", "--limit", "1") == [(runs.tuned, "completed")]
    assert listed("--status", "cancelled") == []
    assert cli("pipeline", "runs", "--status", "cancelled").out.strip() == (
        "Runs: none cancelled (`stackmagic pipeline runs` lists them all)"
    )
    assert cli("pipeline", "runs", "--pipeline", "trian").out.strip() == (
        "Runs: none of pipeline 'trian' (`stackmagic pipeline runs` lists them all)"
    ), "not 'none yet': there are runs, of other pipelines"

    refused = cli("pipeline", "runs", "--status", "stopped")
    assert refused.code == 2 and "invalid choice: 'stopped'" in refused.err, refused.err
    refused = cli("pipeline", "runs", "--limit", "some")
    assert refused.code == 2 and "from 1 to 10000, or all" in refused.err, refused.err


def test_every_run_status_is_a_choice_of_the_status_filter() -> None:
    statuses = {
        value for name, value in vars(RunStatus).items() if name.isupper() and type(value) is str
    }
    assert statuses and statuses <= set(RUN_STATUSES)


def test_compare_in_a_terminal_shows_what_differs_with_the_runs_as_columns(
    runs: Runs, cli: Callable[..., Result]
) -> None:
    compared = cli("pipeline", "compare", runs.default, runs.tuned[:17])
    assert compared.code == 0, compared.err
    lines = [line.split() for line in compared.out.splitlines()]
    assert lines == [
        ["Runs", "compared:"],
        [runs.default, runs.tuned],
        ["parameter", "lr", "0.1", "0.5"],
        ["parameter", "name", "base", "wide"],
        ["metric", "prepare.rows", "10", "10"],
        ["metric", "loss", "1", "0.2"],
        ["metric", "accuracy", "0", "0.8"],
        ["metric", "train.rows", "2", "2"],
        ["the", "same", "in", "every", "run:", "size=10"],
    ]
    reversed_ = cli("pipeline", "compare", runs.tuned, runs.default).out.splitlines()
    assert reversed_[1].split() == [runs.tuned, runs.default], "columns in the order given"


def test_compare_as_json(runs: Runs, cli: Callable[..., Result]) -> None:
    compared = cli("pipeline", "compare", runs.tuned, runs.default, "--json")
    assert compared.code == 0, compared.err
    data = json.loads(compared.out)
    assert [(run["id"], run["status"], run["stack"]) for run in data["runs"]] == [
        (runs.tuned, "completed", "default"),
        (runs.default, "completed", "default"),
    ]
    assert data["parameters"] == {"lr": [0.5, 0.1], "name": ["wide", "base"]}
    assert data["same_parameters"] == {"size": 10}
    assert data["metrics"] == {
        "prepare.rows": [10, 10],
        "loss": [0.2, 1],
        "accuracy": [0.8, 0],
        "train.rows": [2, 2],
    }


def test_compare_says_what_is_wrong_in_one_line(runs: Runs, cli: Callable[..., Result]) -> None:
    cases = {
        (runs.tuned,): "give two runs or more to compare",
        (runs.tuned, "20990101"): "'20990101' names no run in the metadata store",
        (runs.tuned, "latest"): f"'latest' are the same run, {runs.tuned}; give different runs",
        (runs.tuned, runs.default, "--metric", "f1"): (
            "none of these runs logged a metric 'f1' "
            "(they logged: prepare.rows, loss, accuracy, train.rows)"
        ),
    }
    for words, message in cases.items():
        refused = cli("pipeline", "compare", *words)
        assert (refused.code, refused.out) == (2, ""), words
        assert message in refused.err and len(refused.err.strip().splitlines()) == 1, refused.err


@pytest.mark.kernel
def test_pipeline_compare_in_a_kernel_shows_a_table_and_a_chart(
    runs: Runs, initialised: Path
) -> None:
    with started_kernel(initialised) as kernel:
        _, error, displays = kernel.run(
            "%load_ext stackmagic\nimport sys\n"
            "sys.modules['matplotlib'] = None  # as if it were not installed\n"
            f"%pipeline compare {runs.default} {runs.tuned}\n"
            "del sys.modules['matplotlib']"
        )
        assert error == "" and len(displays) == 1 and "text/html" in displays[0], displays

        _, error, (table, chart) = kernel.run(f"%pipeline compare {runs.default} {runs.tuned}")
        assert error == ""
        assert ">parameter lr</td>" in table["text/html"] and ">0.5</td>" in table["text/html"]
        assert "1 parameter the same in every run" in table["text/html"]
        first_metric = base64.b64decode(chart["image/png"])
        assert first_metric.startswith(PNG)

        _, error, (_, accuracy) = kernel.run(
            f"%pipeline compare {runs.default} {runs.tuned} --metric accuracy"
        )
        assert error == "" and accuracy["image/png"] != chart["image/png"], "the metric chosen"


def _get(jp_fetch: Any, loop: Any, path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
    """GET /stackmagic/api/PATH with a query that may repeat a name (``run=A&run=B``)."""
    try:
        response = loop.run_until_complete(jp_fetch("stackmagic", "api", path, params=query))
    except HTTPClientError as error:
        response = error.response
    return response.code, json.loads(response.body)


def test_runs_and_compare_through_the_api(
    api: Any,  # noqa: F811 - the fixture imported above
    jp_fetch: Any,
    jp_asyncio_loop: Any,
    jp_root_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Result],
) -> None:
    monkeypatch.chdir(jp_root_dir)
    runs = make_runs(jp_root_dir)

    def get(path: str, *query: tuple[str, str]) -> tuple[int, Any]:
        return _get(jp_fetch, jp_asyncio_loop, path, list(query))

    status, listed = get("runs", ("status", "completed"), ("limit", "all"))
    assert status == 200
    assert listed == json.loads(cli("pipeline", "runs", "--limit", "all", "--json").out)
    assert [run["changed_parameters"] for run in listed] == [{"lr": 0.5, "name": "wide"}, {}]
    assert get("runs", ("status", "failed")) == (200, [])
    status, answer = get("runs", ("status", "stopped"))
    assert status == 400 and "invalid choice: 'stopped'" in answer["message"]
    status, run = get(f"runs/{runs.tuned}")
    assert status == 200 and run["metrics"]["accuracy"] == 0.8

    status, compared = get("compare", ("run", runs.tuned), ("run", runs.default))
    assert status == 200
    assert compared == json.loads(
        cli("pipeline", "compare", runs.tuned, runs.default, "--json").out
    )
    assert compared["parameters"] == {"lr": [0.5, 0.1], "name": ["wide", "base"]}
    status, answer = get("compare", ("run", runs.tuned))
    assert status == 400 and "give two runs or more to compare" in answer["message"]
    status, answer = get("compare", ("run", runs.tuned), ("run", "20990101"))
    assert status == 404 and "'20990101' names no run" in answer["message"]
    status, answer = get("compare", ("run", runs.tuned), ("run", "--json"))
    assert status == 400 and "cannot start with '-'" in answer["message"]
