"""The grammar under generated commands: whatever is typed, one line or an answer, never a traceback.

Commands are made from the real vocabulary (every command of the parser, its
options, the flavors and their options, the project's names) mixed with odd
text: empty words, control characters, other scripts, huge numbers, ``=``
forms, repeated flags. Each goes through the console script's entry point in
this process against one real project. A refusal must be exit code 2 with one
line on stderr and leave ``config.json`` and the user's secrets byte-identical;
anything else must succeed. Runs that start kernels are left out (they are
slow, and tested on their own), as are stores off this machine: every host is
127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notebooks import write_notebook
from stackmagic.cli import main
from stackmagic.flavors import ComponentType, flavors_of
from stackmagic.open_stack import OpenStack
from stackmagic.parser import build_parser
from stackmagic.registry import Registry

SECRET = "CANARY-fuzz-" + "7f3a9c"
NOTEBOOK = "tiny.ipynb"
STACKS = ["default", "here", "team", "kfp-here", "fresh", "DEFAULT"]
#: The components' names, each with its flavor (for the options of ``update``).
COMPONENTS = {
    ComponentType.ARTIFACT_STORE: {"default": "local", "shelf": "local", "Shelf": "local"},
    ComponentType.METADATA_STORE: {
        "default": "sqlite",
        "lite": "sqlite",
        "sql": "mysql",
        "LITE": "sqlite",
    },
    ComponentType.ORCHESTRATOR: {"default": "local", "kf": "kubeflow", "vm": "gcp-vm"},
    ComponentType.STEP_OPERATOR: {"sm": "sagemaker"},
    ComponentType.EXPERIMENT_TRACKER: {"mlf": "mlflow"},
}
#: What the project knows for each argument (by metavar, or by option for the stack's members).
KNOWN = {
    "NOTEBOOK": [
        NOTEBOOK,
        "old3.ipynb",
        "broken.ipynb",
        "missing.ipynb",
        "/dev/zero",
        "...ipynb",
        "folder",
    ],
    "STEP[.OUTPUT]": ["one", "one.value", "two.total", "one.nope", "three"],
    "STEP": ["one", "two", "three"],
    "N": ["1", "20", "10000", "10001", "0", "9" * 20],
    "PATH": ["out.yaml", "out.yml", "bundle-out", "Dockerfile", "-", "out.json", "sub/out.yaml"],
    "IMAGE": ["python:3.11-slim"],
    "--pipeline": ["tiny", "nope"],
    "--stack": STACKS,
    "AGE|DATE": ["30d", "12h", "0d", "2026-01-31", "9" * 20 + "d", "2026-02-30"],
    **{f"--{kind.value}": [*names, "fresh"] for kind, names in COMPONENTS.items()},
}
ODD = [
    "",
    " ",
    "-",
    "--",
    "-x",
    "--=x",
    "=",
    "a=b",
    "a\nb",
    "evil\n",
    "\t",
    "\r",
    "\x1b[31m",
    "\u2028",
    "\x85",
    "é",
    "日本",
    "💥",
    "\udcff",
    "x" * 300,
    "9" * 30,
    "-1",
    "0",
    "1e23",
    "nan",
    "inf",
    "DEFAULT",
    "...ipynb",
    "..ipynb",
    " .ipynb",
    "true",
    "{}",
    "[]",
    "--help",
    "--json",
]
#: Flavors whose stores are reached over the internet (buckets): other tests register those.
FAR_AWAY = {"gcp", "s3", "azure"}
#: Option values that keep every connection on this machine, to nothing stackmagic may write in.
SAFE_VALUES = {
    "host": "127.0.0.1",
    "endpoint-url": "http://127.0.0.1:9",
    "api-endpoint": "http://127.0.0.1:9",
    "database": "sm_fuzz_absent",
    "username": "sm_fuzz_nobody",
}
TYPICAL = {
    "boolean": ["true", "false", "maybe"],
    "integer": ["0", "1", "2", "100", "-1", "1e23", "9" * 23],
    "mapping": ["a=b,c=d", "a", "=,="],
    "list": ["a,b", ","],
    "path": ["store-dir", "fuzz.db"],
    "port": ["1", "70000", "-1", "9" * 23],
    "project": ["p"],
    "role": ["arn:aws:iam::1:role/x"],
}


def odd_text() -> st.SearchStrategy[str]:
    """Odd words: listed ones and generated text of any script (no NUL: argv cannot hold one).

    Never an absolute path or one that climbs out of the project: written there, it would stay.
    """
    generated = st.text(
        st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=12
    )
    return st.one_of(st.sampled_from(ODD), generated).filter(
        lambda text: not text.startswith(("/", "~")) and ".." not in text.replace("..ipynb", "")
    )


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command of the grammar (``("stack", "register")``...) with its parser."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield words, parser
        return
    for name, sub in groups[0].choices.items():
        yield from _commands(sub, (*words, name))


COMMANDS = dict(_commands(build_parser()))


@st.composite
def commands(draw: st.DrawFn, run_id: str) -> list[str]:
    """A command of the grammar with arguments the project knows, then changed a little or not.

    Changes: a word replaced by odd text, dropped, repeated, an odd word put in, or a flag
    given an ``=`` value; unchanged commands should mostly work, changed ones probe the checks.
    """
    command = draw(st.sampled_from(sorted(COMMANDS)))
    kind = next((kind for kind in ComponentType if kind.value == command[0]), None)
    known = {
        **KNOWN,
        "RUN_ID": [run_id, run_id[:15], "latest", "2099"],
        "NAME": [*COMPONENTS[kind], "fresh"] if kind else STACKS,
        "FLAVOR": sorted(set(flavors_of(kind)) - FAR_AWAY) if kind else [],
    }
    line = list(command)
    for action in COMMANDS[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        pool = (
            [str(choice) for choice in action.choices or []]
            or known.get(action.option_strings[-1] if action.option_strings else "")
            or known.get(str(action.metavar))
            or ["x"]
        )
        if not action.option_strings:
            if action.nargs != "?" or draw(st.integers(0, 4)) < 4:
                line.append(draw(st.sampled_from(pool)))
        elif action.required or draw(st.integers(0, 3)) == 0:
            flag = draw(st.sampled_from(action.option_strings))
            if action.nargs == 0:
                line.append(flag)
            elif action.nargs == 2:  # -p NAME VALUE
                line += [
                    flag,
                    draw(st.sampled_from(["n", "x", "stackmagic_x"])),
                    draw(
                        st.sampled_from(
                            ["3", "1e999", "nan", "'text'", "[1, 2]", "{'a': 1}", "b'x'", "", "1j"]
                        )
                    ),
                ]
            elif draw(st.booleans()):
                line.append(f"{flag}={draw(st.sampled_from(pool))}")
            else:
                line += [flag, draw(st.sampled_from(pool))]
    if kind and command[-1] == "register":
        line += draw(flavor_options(kind, given_flavor(line)))
    elif kind and command[-1] == "update":
        line += draw(flavor_options(kind, COMPONENTS[kind].get(line[2])))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        line = draw(changed(line))
    return line


@st.composite
def changed(draw: st.DrawFn, line: list[str]) -> list[str]:
    at = draw(st.integers(0, len(line) - 1))
    odd = draw(odd_text())
    change = draw(st.sampled_from(["replace", "drop", "repeat", "insert", "equals"]))
    if change == "replace":
        return [*line[:at], odd, *line[at + 1 :]]
    if change == "drop":
        return [*line[:at], *line[at + 1 :]] or [odd]
    if change == "repeat":
        return [*line[: at + 1], *line[at:]]
    if change == "insert":
        return [*line[:at], odd, *line[at:]]
    return [*line[:at], f"{line[at]}={odd}", *line[at + 1 :]]


def given_flavor(line: list[str]) -> str | None:
    """The flavor a ``register`` line names last, as argparse reads it."""
    flavor = None
    for word, following in zip(line, [*line[1:], None]):
        if word in ("--type", "--flavor"):
            flavor = following
        elif word.startswith(("--type=", "--flavor=")):
            flavor = word.split("=", 1)[1]
    return flavor


@st.composite
def flavor_options(draw: st.DrawFn, kind: ComponentType, flavor: str | None) -> list[str]:
    """Options of the flavor (another one's when it is unknown), with typical values."""
    flavors = {name: cls for name, cls in flavors_of(kind).items() if name not in FAR_AWAY}
    chosen = flavors.get(flavor or "") or flavors[draw(st.sampled_from(sorted(flavors)))]
    options: list[str] = []
    for option in chosen.schema()["options"]:
        name = option["name"]
        if not draw(st.integers(0, 9)) < (9 if option["required"] else 3):
            continue
        if name in SAFE_VALUES:
            value = SAFE_VALUES[name]
        elif option["secret"]:
            value = draw(st.sampled_from([SECRET, "env:SM_FUZZ_UNSET"]))
        else:
            value = draw(
                st.sampled_from(
                    option.get("choices")
                    or TYPICAL.get(name)
                    or TYPICAL.get(option["kind"])
                    or ["x"]
                )
            )
        if option["kind"] == "boolean" and draw(st.booleans()):
            options.append(f"--{name}")
        elif draw(st.booleans()):
            options.append(f"--{name}={value}")
        else:
            options += [f"--{name}", value]
    return options


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder of the commands: what they leave there is theirs alone to clean.

    Short, as the kernels' sockets live in it and a socket's path has a small limit.
    """
    folder = Path(tempfile.mkdtemp(prefix="smfz-"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fuzz_project(project: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A project with stacks on this machine, a MariaDB store no one may enter, and one run."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    for words in (
        ["init"],
        ["artifact-store", "register", "shelf", "--type=local", "--path=shelf"],
        ["metadata-store", "register", "lite", "--type=sqlite", "--path=lite.db"],
        [
            "metadata-store",
            "register",
            "sql",
            "--type=mysql",
            "--host=127.0.0.1",
            "--username=sm_fuzz_nobody",
            f"--password={SECRET}",
            "--database=sm_fuzz_absent",
        ],
        ["orchestrator", "register", "kf", "--type=kubeflow", "--mode=local"],
        ["orchestrator", "register", "vm", "--type=gcp-vm", "--project=p"],
        ["step-operator", "register", "sm", "--type=sagemaker", "--role=arn:aws:iam::1:role/x"],
        [
            "experiment-tracker",
            "register",
            "mlf",
            "--type=mlflow",
            "--tracking-uri=http://127.0.0.1:9",
        ],
        ["stack", "register", "here", "-m", "lite", "-a", "shelf", "-o", "default"],
        ["stack", "register", "team", "-m", "sql", "-a", "shelf", "-o", "default"],
        ["stack", "register", "kfp-here", "-m", "default", "-a", "default", "-o", "kf"],
    ):
        assert main(words) == 0, words
    write_notebook(
        project / NOTEBOOK,
        "%%step one\nvalue = [n] * 2",
        "%%step two\ntotal = sum(value)",
        parameters="n = 1",
    )
    (project / "old3.ipynb").write_text('{"nbformat": 3, "nbformat_minor": 0, "worksheets": []}')
    (project / "broken.ipynb").write_text('{"cells": [')
    (project / "folder").mkdir()
    assert main(["pipeline", "run", NOTEBOOK, "--progress=none"]) == 0
    with OpenStack.open(Registry.open()) as opened:
        run_id = opened.metadata.runs(limit=1)[0].id
    return project, run_id


def starts_a_run(words: list[str]) -> bool:
    """``pipeline run`` of the real notebook: kernels and seconds, which other tests spend."""
    return (
        words[:2] == ["pipeline", "run"]
        and any(NOTEBOOK in word for word in words)
        and not {"--dry-run", "-h", "--help"} & set(words)
    )


def test_generated_commands_answer_or_refuse_in_one_line(
    fuzz_project: tuple[Path, str], home: Path
) -> None:
    project, run_id = fuzz_project
    config = project / ".stackmagic" / "config.json"

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(commands(run_id).filter(lambda words: not starts_a_run(words)))
    def check(words: list[str]) -> None:
        before, secrets_before = config.read_bytes(), snapshot(home)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(words)
        # `pipeline cancel` of the fuzz project's finished run: exit 1, nothing to cancel
        refused = (1, 2) if words[:2] == ["pipeline", "cancel"] else (2,)
        assert code == 0 or code in refused, (words, code, err.getvalue())
        assert SECRET not in out.getvalue() + err.getvalue(), words
        if code == 0:  # stderr may show progress
            assert "Traceback" not in err.getvalue(), (words, err.getvalue())
            return
        assert out.getvalue() == "", (words, out.getvalue())
        lines = err.getvalue().split("\n")
        assert len(lines) == 2 and lines[1] == "" and lines[0].startswith("stackmagic"), (
            words,
            lines,
        )
        assert lines[0].isprintable(), lines
        assert config.read_bytes() == before, words
        assert snapshot(home) == secrets_before, words

    check()
