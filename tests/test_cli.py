"""The terminal grammar end to end: what a user types and what they see."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CANARY, REFERENCE_SEQUENCE

from notebooks import write_notebook


def members(cli, stack: str) -> dict[str, str]:
    described = json.loads(cli("stack", "describe", stack, "--json").out)
    return {component["type"]: component["name"] for component in described["components"]}


def test_init_in_empty_folder_shows_default_stack_active(project: Path, terminal) -> None:
    result = terminal("init")
    assert result.code == 0, result.err
    assert (project / ".stackmagic" / "config.json").is_file()
    assert "Initialized" in result.out

    again = terminal("init")
    assert again.code == 0 and "Already initialized" in again.out

    listing = terminal("stack", "list")
    assert listing.code == 0
    active_lines = [line for line in listing.out.splitlines() if line.startswith("●")]
    assert len(active_lines) == 1 and active_lines[0].split()[1] == "default"


def test_reference_page_sequence_makes_gcp_active(project: Path, terminal) -> None:
    terminal("init")
    for words in REFERENCE_SEQUENCE:
        result = terminal(*words)
        assert result.code == 0, (words, result.err)
        assert CANARY not in result.out + result.err
    got = terminal("stack", "get")
    assert got.out.strip() == "gcp"

    describe = json.loads(terminal("stack", "describe", "--json").out)
    assert describe["name"] == "gcp" and describe["active"] is True
    members = {c["type"]: (c["name"], c["flavor"]) for c in describe["components"]}
    assert members == {
        "artifact-store": ("gcs", "gcp"),
        "metadata-store": ("sql", "mysql"),
        "orchestrator": ("kf", "kubeflow"),
    }


def test_flavor_alias_and_space_separated_options(project: Path, cli) -> None:
    assert (
        cli(
            "artifact-store",
            "register",
            "s3store",
            "--flavor",
            "s3",
            "--path",
            "s3://b/d",
            "--endpoint-url",
            "http://127.0.0.1:9000",
        ).code
        == 0
    )
    described = json.loads(cli("artifact-store", "describe", "s3store", "--json").out)
    assert described["flavor"] == "s3"
    assert described["options"]["path"] == "s3://b/d"
    assert described["options"]["endpoint_url"] == "http://127.0.0.1:9000"


def test_component_list_describe_update_delete(project: Path, cli) -> None:
    cli("init")
    assert cli("orchestrator", "register", "vm", "--type=gcp-vm", "--project=p1").code == 0
    assert (
        cli("orchestrator", "update", "vm", "--preemptible", "--labels=team=ml,env=dev").code == 0
    )

    listing = json.loads(cli("orchestrator", "list", "--json").out)
    vm = next(item for item in listing if item["name"] == "vm")
    assert vm["options"]["preemptible"] is True
    assert vm["options"]["labels"] == {"team": "ml", "env": "dev"}
    assert vm["used_by"] == []

    text = cli("orchestrator", "describe", "vm").out
    assert "--preemptible" in text and "true" in text and "team=ml,env=dev" in text

    assert cli("orchestrator", "delete", "vm").code == 0
    assert "vm" not in cli("orchestrator", "list").out


def test_local_paths_are_made_absolute_from_where_the_command_runs(project: Path, cli) -> None:
    (project / "sub").mkdir()
    cli("init")
    assert cli("artifact-store", "register", "here", "--type=local", "--path=data/store").code == 0
    shown = json.loads(cli("artifact-store", "describe", "here", "--json").out)
    assert shown["options"]["path"] == str(project / "data" / "store")
    default = json.loads(cli("artifact-store", "describe", "default", "--json").out)
    assert default["options"]["path"] == str(project / ".stackmagic" / "artifacts")
    (project / "sub").mkdir(exist_ok=True)
    import os

    os.chdir(project / "sub")
    assert cli("metadata-store", "register", "lite", "--type=sqlite").code == 0
    lite = json.loads(cli("metadata-store", "describe", "lite", "--json").out)
    assert lite["options"]["path"] == str(project / ".stackmagic" / "metadata.db"), (
        "a default path stays inside .stackmagic/, wherever the command runs"
    )


def test_registry_is_found_by_walking_up(project: Path, cli, monkeypatch) -> None:
    cli("init")
    cli("artifact-store", "register", "gcs", "--type=gcp", "--path=gs://b/d")
    deep = project / "notebooks" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert "gcs" in cli("artifact-store", "list").out
    assert not (deep / ".stackmagic").exists()


def test_without_init_the_per_user_registry_is_used(project: Path, home: Path, cli) -> None:
    result = cli("stack", "get")
    assert result.code == 0 and result.out.strip() == "default"
    assert (home / "registry" / "config.json").is_file()
    assert not (project / ".stackmagic").exists()


def test_stack_env_variable_overrides_the_active_stack_for_one_process(
    project: Path, cli, terminal
) -> None:
    for words in REFERENCE_SEQUENCE[:4]:
        cli(*words)
    assert terminal("stack", "get", env={"STACKMAGIC_STACK": "gcp"}).out.strip() == "gcp"
    assert terminal("stack", "get").out.strip() == "default"
    wrong = terminal("stack", "get", env={"STACKMAGIC_STACK": "nope"})
    assert wrong.code == 2 and "STACKMAGIC_STACK" in wrong.err


def test_stack_update_swaps_components_and_keeps_validating(project: Path, cli) -> None:
    for words in REFERENCE_SEQUENCE[:4]:
        cli(*words)
    cli("orchestrator", "register", "vm", "--type=aws-vm")
    assert cli("stack", "update", "gcp", "-o", "vm").code == 0
    assert members(cli, "gcp")["orchestrator"] == "vm"
    refused = cli("stack", "update", "gcp", "-a", "default")
    assert refused.code == 2 and "-a" in refused.err


def test_step_operator_is_optional_in_a_stack(project: Path, cli) -> None:
    for words in REFERENCE_SEQUENCE[:3]:
        cli(*words)
    assert (
        cli(
            "step-operator", "register", "sm", "--type=sagemaker", "--role=arn:aws:iam::1:role/x"
        ).code
        == 0
    )
    assert (
        cli("stack", "register", "full", "-m", "sql", "-a", "gcs", "-o", "kf", "-s", "sm").code == 0
    )
    assert "sm" in cli("stack", "list").out
    assert members(cli, "full")["step-operator"] == "sm"
    assert cli("stack", "update", "full", "--no-step-operator").code == 0
    assert "step-operator" not in members(cli, "full")


def test_flavors_lists_every_flavor_with_its_options(project: Path, cli) -> None:
    text = cli("metadata-store", "flavors").out
    for flavor in ("sqlite", "mysql", "postgresql"):
        assert f"\n  {flavor} (" in text
    assert "--password=TEXT|env:VARIABLE|- (secret)" in text
    assert "--host=TEXT (required)" in text
    schema = json.loads(cli("orchestrator", "flavors", "--json").out)
    assert [f["flavor"] for f in schema] == [
        "local",
        "kubeflow",
        "vertex",
        "airflow",
        "gcp-vm",
        "aws-vm",
        "azure-vm",
        "kubernetes",
    ]
    kubeflow = schema[1]
    mode = next(option for option in kubeflow["options"] if option["name"] == "mode")
    assert mode["choices"] == ["remote", "local"]


def test_help_exits_zero_and_names_the_actions(project: Path, cli) -> None:
    result = cli("stack", "--help")
    assert result.code == 0
    for action in ("register", "set", "get", "list", "describe", "delete"):
        assert action in result.out


def test_python_dash_m_works_like_the_console_script(project: Path) -> None:
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "stackmagic", "stack", "get"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == "default"


def test_a_runs_limit_no_database_can_take_is_one_line(project: Path, cli) -> None:
    assert cli("init").code == 0
    refused = cli("pipeline", "runs", "--limit", "99999999999999999999")
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert "expects a whole number from 1 to 10000" in refused.err


def _named(name: str) -> Callable[[Path], Path]:
    return lambda folder: write_notebook(folder / name, "%%step one\nvalue = 1")


def _pipe(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.ipynb")  # reading it would wait for a writer forever
    return folder / "pipe.ipynb"


def _nbformat_3(folder: Path) -> Path:
    path = folder / "old.ipynb"
    path.write_text(
        '{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}'
    )
    return path


def _reserved_parameter(folder: Path) -> Path:
    return write_notebook(
        folder / "p.ipynb", "%%step one\nvalue = 1", parameters="stackmagic_seed = 1"
    )


NOT_PIPELINES = {
    "a pipe": (_pipe, "pipe.ipynb is not a file: give the path of a saved .ipynb notebook"),
    "a device": (lambda folder: Path("/dev/zero"), "/dev/zero is not a file"),
    "nbformat 3": (
        _nbformat_3,
        "is an old nbformat 3 notebook; convert it with `jupyter nbconvert "
        "--to notebook --nbformat 4 --inplace old.ipynb`",
    ),
    "three dots": (_named("...ipynb"), "the file name '...ipynb' gives no pipeline name"),
    "two dots": (_named("..ipynb"), "the file name '..ipynb' gives no pipeline name"),
    "a space": (_named(" .ipynb"), "the file name ' .ipynb' gives no pipeline name"),
    "a stackmagic_ parameter on the local stack": (
        _reserved_parameter,
        "parameter 'stackmagic_seed': names starting with 'stackmagic_' are stackmagic's own",
    ),
}


@pytest.mark.parametrize("make, message", NOT_PIPELINES.values(), ids=NOT_PIPELINES.keys())
def test_what_is_no_pipeline_is_refused_in_one_line(
    initialised: Path, cli, make, message: str
) -> None:
    notebook = make(initialised)
    for words in (["pipeline", "show", str(notebook)], ["pipeline", "run", str(notebook)]):
        result = cli(*words)
        assert result.code == 2 and result.out == "" and result.err.count("\n") == 1, result
        assert message in result.err
    assert cli("pipeline", "runs", "--json").out.strip() == "[]", "nothing was run"
