"""The same grammar as IPython magics, in an in-process shell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CANARY, REFERENCE_SEQUENCE, snapshot
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from stackmagic.flavors import ComponentType
from stackmagic.registry import Registry


@pytest.fixture
def shell(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # its own history database
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "stackmagic")
    yield ip
    InteractiveShell.clear_instance()


def magic(shell, words: list[str]):
    with capture_output() as captured:
        shell.run_line_magic(words[0], " ".join(words[1:]))
    return captured


def test_reference_sequence_as_magics(shell, cli) -> None:
    magic(shell, ["stackmagic", "init"])
    for words in REFERENCE_SEQUENCE:
        captured = magic(shell, words)
        assert CANARY not in captured.stdout + str([o.data for o in captured.outputs])
    assert cli("stack", "get").out.strip() == "gcp"


def test_outputs_render_as_html_with_the_active_stack_marked(shell) -> None:
    for words in REFERENCE_SEQUENCE:
        magic(shell, words)
    with capture_output() as captured:
        shell.run_line_magic("stack", "list")
    (html,) = [o.data["text/html"] for o in captured.outputs]
    assert "<table>" in html
    active_row = next(row for row in html.split("<tr") if "font-weight:bold" in row)
    assert ">gcp<" in active_row and ">default<" not in active_row

    with capture_output() as captured:
        shell.run_line_magic("metadata-store", "describe sql")
    assert "********" in captured.outputs[0].data["text/html"]
    assert CANARY not in captured.outputs[0].data["text/html"]


def test_json_flag_prints_json_in_a_notebook_too(shell) -> None:
    with capture_output() as captured:
        shell.run_line_magic("stack", "get --json")
    assert json.loads(captured.stdout)["active_stack"] == "default"


def test_mistakes_raise_usage_error_naming_the_magic(shell, project: Path) -> None:
    magic(shell, ["stackmagic", "init"])
    before = snapshot(project / ".stackmagic")
    with pytest.raises(UsageError, match=r"^%stack register: the following arguments are required"):
        shell.run_line_magic("stack", "register x -m default")
    with pytest.raises(UsageError, match=r"valid flavors: local, gcp, s3, azure"):
        shell.run_line_magic("artifact-store", "register x --type=hdfs")
    with pytest.raises(UsageError, match=r"`%stack register prod"):
        shell.run_line_magic("stack", "set prod")
    with pytest.raises(UsageError, match="No closing quotation"):
        shell.run_line_magic("stack", 'set "prod')
    assert snapshot(project / ".stackmagic") == before


def test_a_mistake_in_a_cell_shows_one_line_not_a_traceback(shell) -> None:
    with capture_output() as captured:
        result = shell.run_cell("%stack set prod")
    assert not result.success
    assert "Traceback" not in captured.stdout + captured.stderr
    assert "UsageError: no stack named 'prod'" in captured.stdout + captured.stderr


def test_help_prints_and_keeps_the_kernel_alive(shell) -> None:
    with capture_output() as captured:
        shell.run_line_magic("artifact-store", "register --help")
    assert "--type FLAVOR" in captured.stdout


def test_magics_without_arguments_show_widgets(shell) -> None:
    with capture_output() as captured:
        shell.run_line_magic("stack", "")
        shell.run_line_magic("orchestrator", "")
    models = [o.data for o in captured.outputs]
    assert len(models) == 2
    assert all("application/vnd.jupyter.widget-view+json" in data for data in models)
    assert (
        "StackSwitcher" in models[0]["text/plain"] and "RegistrationForm" in models[1]["text/plain"]
    )


def test_load_ext_imports_nothing_heavy() -> None:
    heavy = [
        "kfp",
        "papermill",
        "sqlalchemy",
        "jupyter_server",
        "gcsfs",
        "s3fs",
        "adlfs",
        "fsspec",
        "ipywidgets",
        "nbclient",
        "nbformat",
    ]
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "before = set(sys.modules)\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'stackmagic')\n"
        f"print([m for m in {heavy!r} if m in sys.modules and m not in before])\n"
        "print('stackmagic.magics' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    imported, loaded = completed.stdout.splitlines()
    assert loaded == "True"
    assert imported == "[]"


def test_step_cell_runs_its_body_in_the_kernel(shell) -> None:
    with capture_output() as captured:
        result = shell.run_cell("%%step load --cpu 2\nx = 41 + 1\n!echo from-the-shell\nprint(x)")
    assert result.success
    assert shell.user_ns["x"] == 42
    assert "42" in captured.stdout


def test_failing_step_cell_fails_the_cell(shell) -> None:
    with capture_output() as captured:
        result = shell.run_cell("%%step broken\n1 / 0")
    assert not result.success
    assert "ZeroDivisionError" in captured.stdout + captured.stderr
    assert "step 'broken' failed" in captured.stdout + captured.stderr


def test_bad_step_line_is_a_usage_error_and_runs_nothing(shell) -> None:
    with pytest.raises(UsageError, match=r"^%%step: --memory expects a size"):
        shell.run_cell_magic("step", "load --memory lots", "ran = True")
    assert "ran" not in shell.user_ns


def test_pipeline_show_defaults_to_the_kernels_notebook(shell, tmp_path: Path, monkeypatch) -> None:
    from notebooks import write_notebook

    notebook = write_notebook(tmp_path / "current.ipynb", "%%step a\nx = 1", "%%step b\ny = x + 1")
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    for line in ("show", ""):
        with capture_output() as captured:
            shell.run_line_magic("pipeline", line)
        (data,) = [output.data for output in captured.outputs]
        assert "text/html" not in data, "Markdown, so JupyterLab draws the Mermaid DAG"
        assert "```mermaid\nflowchart TD" in data["text/markdown"]
        assert "a -->|x| b" in data["text/markdown"]
    with pytest.raises(UsageError, match="the pipeline has no parameter 'unused'"):
        shell.run_line_magic("pipeline", "show --cache -p unused 1")
    with capture_output() as captured:
        shell.run_line_magic("pipeline", "show --cache")
    (data,) = [output.data for output in captured.outputs]
    assert [line.split(None, 1) for line in data["text/plain"].splitlines()[2:]] == [
        ["a", "first run"],
        ["b", "runs after a (which re-runs)"],
    ]


def test_widget_magic_with_a_bad_override_is_one_usage_error(shell, monkeypatch) -> None:
    monkeypatch.setenv("STACKMAGIC_STACK", "nope")
    with pytest.raises(UsageError, match="STACKMAGIC_STACK=nope names no registered stack"):
        shell.run_line_magic("stack", "")


def test_a_word_starting_with_hash_ends_the_line_as_in_a_shell(shell, cli, project: Path) -> None:
    magic(shell, ["stackmagic", "init"])
    magic(
        shell,
        [
            "artifact-store",
            "register",
            "runs",
            "--type=local",
            "--path=data#1",
            "#",
            "kept",
            "beside",
            "the",
            "notebook",
        ],
    )
    described = json.loads(cli("artifact-store", "describe", "runs", "--json").out)
    assert described["options"]["path"] == str(project / "data#1"), "a '#' inside a word stays"
    magic(shell, ["stack", "list", "#a", "table"])  # a comment, not two stray arguments


def test_a_secret_typed_into_a_cell_is_refused_and_scrubbed_from_history(
    shell, initialised: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register = "%metadata-store register sql --type=mysql --host=db --database=ml --username=ml"
    with capture_output() as captured:
        result = shell.run_cell(f"{register} --password={CANARY}", store_history=True)
    assert isinstance(result.error_in_exec, UsageError)
    message = str(result.error_in_exec)
    assert "--password: a secret typed into a notebook" in message and "\n" not in message
    assert "--password=-" in message and "env:VARIABLE" in message
    assert CANARY not in message + captured.stdout + captured.stderr
    assert metadata_store_names() == ["default"]  # nothing registered, nothing kept

    history = shell.history_manager
    history.writeout_cache()
    typed = [source for _, _, source in history.get_range(raw=True)]
    assert typed and register in typed[-1]
    assert CANARY not in "\n".join(typed + history.input_hist_parsed)
    assert CANARY not in str(shell.user_ns["_i"]) + str(shell.user_ns["_ih"])
    stored = history.db.execute("SELECT source, source_raw FROM history").fetchall()
    assert stored and CANARY not in str(stored)

    # A value the cell does not spell out (a variable, the environment) is accepted.
    monkeypatch.setenv("ML_PASSWORD", CANARY)
    shell.user_ns["password"] = CANARY
    result = shell.run_cell(f"{register} --password={{password}}", store_history=True)
    assert result.success
    assert metadata_store_names() == ["default", "sql"]
    assert CANARY not in (initialised / ".stackmagic" / "config.json").read_text()
    assert CANARY in (home / "secrets.json").read_text()  # kept where secrets are kept
    # A value that happens to appear elsewhere in the cell (here the user name) is not refused.
    shell.user_ns["password"] = "ml"
    assert shell.run_cell(
        "%metadata-store update sql --username=ml --password={password}", store_history=True
    ).success


def metadata_store_names() -> list[str]:
    return [c.name for c in Registry.open().components(ComponentType.METADATA_STORE)]
