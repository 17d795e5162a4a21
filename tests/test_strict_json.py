"""Every JSON the CLI and the REST API emit parses with a strict parser: JSON has no NaN or Infinity.

A browser's ``JSON.parse`` refuses ``NaN``; Python's parser takes it, so a lenient test
would not notice. One real run with odd parameters and displays, then every ``--json``
command of the grammar and every GET route of the server (a real Jupyter server).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the jp_* fixtures

from notebooks import write_notebook
from stackmagic.cli import main
from stackmagic.component_type import ComponentType
from stackmagic.parser import build_parser
from stackmagic.server.handlers import routes

#: ``-p NAME VALUE`` overrides at the edges of what JSON holds.
ODD_PARAMETERS = {
    "largest": "1.7976931348623157e308",
    "smallest": "5e-324",
    "negative_zero": "-0.0",
    "huge": "123456789012345678901234567890",
    "nothing": "None",
    "text": "'naïve\\ttab\\nline \\u2028 \"quoted\" \\\\ 💥'",
    "nested": "{'a': [1.5, None, True], 'b': {'c': -1e-300}}",
}


def strict(text: str) -> Any:
    """``json.loads`` as a browser parses: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _json_commands() -> list[tuple[str, ...]]:
    """Every command of the grammar that has ``--json``."""
    found = []
    groups = [((), build_parser())]
    while groups:
        words, parser = groups.pop()
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subcommands:
            groups += [((*words, name), sub) for name, sub in subcommands[0].choices.items()]
        elif any("--json" in action.option_strings for action in parser._actions):
            found.append(words)
    return sorted(found)


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"stackmagic.server": True}}}


@pytest.fixture
def ran(jp_root_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The server's folder as a project with a component of every type, and one finished run."""
    monkeypatch.chdir(jp_root_dir)
    for words in (
        ["init"],
        [
            "step-operator",
            "register",
            "default",
            "--type=sagemaker",
            "--role=arn:aws:iam::1:role/x",
        ],
        [
            "experiment-tracker",
            "register",
            "default",
            "--type=mlflow",
            "--tracking-uri=http://127.0.0.1:9",
        ],
        ["orchestrator", "register", "kf", "--type=kubeflow", "--mode=local"],
        ["stack", "register", "kfp-here", "-m", "default", "-a", "default", "-o", "kf"],
    ):
        assert main(words) == 0, words
    defaults = {"text": "''", "nested": "None", "nothing": "None"}  # the kinds given
    parameters = "\n".join(f"{name} = {defaults.get(name, 0)}" for name in ODD_PARAMETERS)
    notebook = write_notebook(
        jp_root_dir / "odd.ipynb",
        "%%step one\nimport stackmagic\nvalues = [largest, smallest, negative_zero, huge, text, "
        "nested, nothing]\nstackmagic.log_metric('smallest', smallest)",
        "%%step two\nfrom IPython.display import JSON, display\n"
        "display(JSON({'loss': float('nan'), 'bound': float('inf')}))\ncount = len(values)",
        parameters=parameters + "\nunbounded = 1e999\nnot_a_number = float('nan')",
    )
    given = [word for name, value in ODD_PARAMETERS.items() for word in ("-p", name, value)]
    code, out = _json_of("pipeline", "run", notebook.name, *given, "--json")
    assert code == 0, out
    run = strict(out)
    code, out = _json_of("pipeline", "run", notebook.name, "-p", "largest", "1e999", "--json")
    assert code in (0, 2), out  # refused: JSON has no infinity; were it run, the listings hold it
    assert run["parameters"]["huge"] == 123456789012345678901234567890
    assert run["parameters"]["unbounded"] == "1e999", "a default JSON cannot hold is kept as text"
    return notebook, run["id"]


def _json_of(*words: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(words))
    return code, out.getvalue() if code == 0 else err.getvalue()


def test_every_json_command_prints_strict_json(ran: tuple[Path, str], tmp_path: Path) -> None:
    notebook, run_id = ran
    code, out = _json_of("pipeline", "run", notebook.name, "--no-cache", "--json")
    assert code == 0, out
    other_run_id = json.loads(out)["id"]  # the defaults, beside the odd values, to compare
    arguments = {  # the arguments of each command, as many times as it is to be run
        ("pipeline", "run"): [[notebook.name, "-p", "largest", "1e-308"]],
        ("pipeline", "show"): [[notebook.name], [notebook.name, "--cache", "-p", "huge", "2"]],
        ("pipeline", "export"): [
            [notebook.name, "--to", "bundle", "-o", str(tmp_path / "bundle")],
            [
                notebook.name,
                "--to",
                "kubeflow",
                "-o",
                str(tmp_path / "p.yaml"),
                "--stack",
                "kfp-here",
            ],
        ],
        ("pipeline", "describe"): [[run_id], ["latest"]],
        ("pipeline", "load"): [[run_id, "one"]],
        ("pipeline", "logs"): [[run_id]],
        ("pipeline", "cancel"): [[run_id]],
        ("pipeline", "schedule"): [[notebook.name, "--cron", "0 3 * * *"]],
        ("pipeline", "unschedule"): [["nightly"]],
        ("pipeline", "compare"): [[run_id, other_run_id]],
        ("stack", "describe"): [["default"], []],
        ("gc",): [["--dry-run"]],
        **{(kind.value, "describe"): [["default"]] for kind in ComponentType},
    }
    #: Commands with nothing to show or do here: their exit code and one line on stderr instead.
    refusals = {
        ("pipeline", "logs"): (2, "left no log"),
        ("pipeline", "cancel"): (1, "nothing to cancel"),
        ("pipeline", "schedule"): (2, "cannot run pipelines on a schedule"),
        ("pipeline", "unschedule"): (2, "no schedule 'nightly'"),
    }
    for command in _json_commands():
        for given in arguments.get(command, [[]]):
            code, out = _json_of(*command, *given, "--json")
            if command in refusals:
                expected_code, said = refusals[command]
                assert code == expected_code and said in out, out
                continue
            assert code == 0, (command, out)
            strict(out)


def test_every_get_route_answers_strict_json(
    ran: tuple[Path, str], jp_fetch: Any, jp_asyncio_loop: Any, jp_root_dir: Path
) -> None:
    notebook, run_id = ran
    code, out = _json_of("pipeline", "run", notebook.name, "--no-cache", "--json")
    assert code == 0, out
    values = {
        "name": ["default"],
        "kind": [kind.value for kind in ComponentType],
        "run_id": [run_id, "latest"],
        "step": ["one", "two"],
    }
    #: what a route's path does not say: the output to preview, the query
    outputs = {"step": ["one"], "name": ["values"]}
    queries = {
        "pipeline": [("notebook", notebook.name)],
        "compare": [("run", run_id), ("run", json.loads(out)["id"])],
    }
    answered = {}
    for pattern, handler, _ in routes("/", str(jp_root_dir)):
        if "get" not in vars(handler):
            continue
        path = pattern.removeprefix("/stackmagic/api/")
        groups = re.findall(r"\(\?P<(\w+)>", path)
        chosen_values = {**values, **outputs} if "/outputs/" in path else values
        for chosen in itertools.product(*(chosen_values[group] for group in groups)):
            filled = path
            for value in chosen:
                filled = re.sub(r"\(\?P<\w+>[^)]*\)", value, filled, count=1)
            response = jp_asyncio_loop.run_until_complete(
                jp_fetch(
                    "stackmagic", "api", *filled.split("/"), method="GET", params=queries.get(path)
                )
            )
            assert response.code == 200, filled
            answered[filled] = strict(response.body.decode())
    shown = answered[f"runs/{run_id}/steps/two/notebook"]
    displayed = [
        output["data"]["application/json"]
        for cell in shown["cells"]
        for output in cell.get("outputs", [])
        if "application/json" in output.get("data", {})
    ]
    assert displayed == [{"loss": "nan", "bound": "inf"}], "the kernel sent them as text"
    assert (
        answered[f"runs/{run_id}"]["parameters"]["text"] == 'naïve\ttab\nline \u2028 "quoted" \\ 💥'
    )
