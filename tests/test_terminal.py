"""The ``stackmagic`` command in a terminal: colour on a screen, plain text elsewhere, a live
run display that ends red on failure, a failure said once, pipes that close early, help that
reads well, "did you mean", and shell completion. Every command runs the installed console
script, on a real pseudo-terminal where a screen matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, Result
from test_flavors import install_plugin

from notebooks import write_notebook

ESCAPE = "\x1b["
RED = "\x1b[31m"


def on_screen(project: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``stackmagic ARGS`` on a pseudo-terminal, as a person at a screen runs it: its exit code
    and everything it showed (stdout and stderr both go to the screen)."""
    child = pexpect.spawn(
        str(BIN / "stackmagic"),
        list(args),
        cwd=str(project),
        env={**os.environ, **(env or {})},
        encoding="utf-8",
        dimensions=(40, 160),
        timeout=120,
    )
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


def failing_notebook(folder: Path) -> Path:
    return write_notebook(
        folder / "fail.ipynb",
        "%%step make\nx = 1",
        "%%step boom\nz = x\nraise ValueError('bad value ' + str(z))",
        "%%step after_boom\ny = z + 1",
    )


def quick_notebook(folder: Path) -> Path:
    return write_notebook(folder / "quick.ipynb", "%%step one\nx = 1", "%%step two\ny = x + 1")


def test_a_listing_on_a_screen_is_coloured_and_plain_elsewhere(
    initialised: Path, terminal: Callable[..., Result]
) -> None:
    assert terminal("pipeline", "run", str(quick_notebook(initialised))).code == 0
    assert terminal("pipeline", "run", str(failing_notebook(initialised))).code == 1

    code, shown = on_screen(initialised, "pipeline", "runs")
    assert code == 0
    assert f"{RED}failed" in shown, shown
    assert "\x1b[32mcompleted" in shown, "completed runs are green"

    piped = terminal("pipeline", "runs")
    assert piped.code == 0 and "failed" in piped.out
    assert ESCAPE not in piped.out + piped.err, "a pipe gets no escape codes"


@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_color_gives_plain_text_on_a_screen(initialised: Path, value: str) -> None:
    """no-color.org: any value but the empty one; a screen then gets what a pipe gets."""
    code, shown = on_screen(initialised, "stack", "list", env={"NO_COLOR": ""})
    assert code == 0 and ESCAPE in shown, "NO_COLOR set empty leaves colour on"
    code, shown = on_screen(initialised, "stack", "list", env={"NO_COLOR": value})
    assert code == 0 and ESCAPE not in shown, repr(shown)
    assert shown.replace("\r\n", "\n") == (
        "Stacks:\n"
        "  stack    artifact store  metadata store  orchestrator  step operator\n"
        "● default  default         default         default       -\n"
    )


def test_json_on_a_screen_is_the_json_a_pipe_gets(
    initialised: Path, terminal: Callable[..., Result]
) -> None:
    code, shown = on_screen(initialised, "stack", "describe", "--json")
    assert code == 0 and ESCAPE not in shown
    assert json.loads(shown) == json.loads(terminal("stack", "describe", "--json").out)


def test_output_to_a_pipe_does_not_import_rich(initialised: Path) -> None:
    probe = (
        "import sys\nfrom stackmagic.cli import main\nmain(['stack', 'list'])\n"
        "print('rich' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=initialised, capture_output=True, text=True, check=True
    )
    assert done.stderr.strip() == "False"


def test_a_run_on_a_screen_says_what_it_runs_first_and_ends_red_on_failure(
    initialised: Path,
) -> None:
    failing_notebook(initialised)
    code, shown = on_screen(initialised, "pipeline", "run", "fail.ipynb")
    assert code == 1
    assert shown.startswith("\x1b[1mRunning fail.ipynb on stack default"), shown[:200]
    assert "100%" not in shown
    last_display_line = next(line for line in reversed(shown.splitlines()) if "✗ run " in line)
    assert "\x1b[1;31m✗ run " in last_display_line and "failed after" in last_display_line
    assert "(step boom)" in last_display_line
    assert "✓\x1b[0m make" in shown, "a step that ended leaves its line"


def test_a_failure_is_said_once(initialised: Path, terminal: Callable[..., Result]) -> None:
    """The step's error, once on a screen; once on stderr elsewhere (stdout keeps the record)."""
    failing_notebook(initialised)
    code, shown = on_screen(initialised, "pipeline", "run", "fail.ipynb")
    assert code == 1
    assert shown.count("bad value 1") == 1, shown
    error_line = shown.strip().splitlines()[-1]
    assert "step 'boom' failed: ValueError: bad value 1" in error_line
    assert "executed notebook: " in error_line

    piped = terminal("pipeline", "run", "fail.ipynb")
    assert piped.code == 1
    assert piped.err.count("bad value 1") == 1, piped.err
    assert "  boom: failed\n" in piped.err


def test_a_listing_into_a_closed_pipe_ends_quietly(initialised: Path) -> None:
    """`stackmagic pipeline runs | head -1`, with head gone before the listing is written."""
    quick_notebook(initialised)
    for _ in range(3):
        run = subprocess.run(
            [str(BIN / "stackmagic"), "pipeline", "run", "quick.ipynb"],
            cwd=initialised,
            capture_output=True,
        )
        assert run.returncode == 0
    with subprocess.Popen(
        [str(BIN / "stackmagic"), "pipeline", "runs"],
        cwd=initialised,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as listing:
        assert listing.stdout is not None and listing.stderr is not None
        listing.stdout.close()
        said = listing.stderr.read()
    assert listing.returncode == 0 and said == "", said


def test_a_run_whose_pipes_close_goes_on_and_is_recorded_as_it_ended(
    initialised: Path, terminal: Callable[..., Result]
) -> None:
    quick_notebook(initialised)
    with subprocess.Popen(
        [str(BIN / "stackmagic"), "pipeline", "run", "quick.ipynb", "--progress", "lines"],
        cwd=initialised,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as run:
        assert run.stdout is not None and run.stderr is not None
        run.stdout.close()
        run.stderr.close()
    assert run.returncode == 0
    [recorded] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert recorded["status"] == "completed"
    assert [step["status"] for step in recorded["steps"]] == ["completed", "completed"]


def test_a_run_started_with_its_standard_error_closed_runs_and_is_recorded(
    initialised: Path, terminal: Callable[..., Result]
) -> None:
    """``2>&-``: Python has no sys.stderr, and the next file opened would take descriptor 2."""
    quick_notebook(initialised)
    run = subprocess.run(
        ["sh", "-c", f"exec {BIN / 'stackmagic'} pipeline run quick.ipynb 2>&-"],
        cwd=initialised,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout
    assert "completed" in run.stdout, "what goes to standard output is still shown"
    [recorded] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert recorded["status"] == "completed"


def test_help_speaks_of_an_artifact_store_and_lists_the_flavors(
    project: Path, tmp_path: Path, terminal: Callable[..., Result]
) -> None:
    helped = terminal("artifact-store", "register", "--help")
    assert helped.code == 0
    assert "Register an artifact store." in helped.out
    assert "the flavor: local, gcp, s3, azure" in " ".join(helped.out.split())
    listing = terminal("--help").out + terminal("orchestrator", "--help").out
    assert "register an orchestrator" in listing and " a orchestrator" not in listing

    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "hdfs = hdfs_flavor:HDFSArtifactStore")
    with_plugin = terminal("artifact-store", "register", "--help", env={"PYTHONPATH": str(site)})
    assert "the flavor: local, gcp, s3, azure, hdfs" in " ".join(with_plugin.out.split())


MISSPELT = {
    "a command": (["stak", "list"], "did you mean 'stack'?"),
    "a component type": (["artifact-stor", "list"], "did you mean 'artifact-store'?"),
    "an action": (["pipeline", "rnu", "x.ipynb"], "did you mean 'run'?"),
    "a flavor": (
        ["artifact-store", "register", "x", "--type=gpc"],
        "unknown artifact store flavor 'gpc'; did you mean 'gcp'? "
        "(valid flavors: local, gcp, s3, azure)",
    ),
    "a flavor given with --flavor": (
        ["orchestrator", "register", "x", "--flavor", "kubeflo"],
        "did you mean 'kubeflow'?",
    ),
    "a stack": (
        ["stack", "set", "defualt"],
        "no stack named 'defualt'; did you mean 'default'? (registered: default)",
    ),
    "a component": (
        ["orchestrator", "describe", "defalt"],
        "no orchestrator named 'defalt'; did you mean 'default'? (registered: default)",
    ),
}


@pytest.mark.parametrize("words, guess", MISSPELT.values(), ids=MISSPELT.keys())
def test_a_misspelt_word_gets_did_you_mean_in_one_line(
    initialised: Path, terminal: Callable[..., Result], words: list[str], guess: str
) -> None:
    result = terminal(*words)
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert guess in result.err


def test_a_word_near_nothing_lists_the_choices_instead(
    project: Path, terminal: Callable[..., Result]
) -> None:
    result = terminal("xyzzy")
    assert result.code == 2 and "did you mean" not in result.err
    assert "choose from 'init', 'stack'" in result.err


def complete(project: Path, line: str) -> set[str]:
    """What Tab offers after ``line``, by argcomplete's protocol (as its bash function asks)."""
    answer = project.parent / "completions"
    subprocess.run(
        [str(BIN / "stackmagic")],
        cwd=project,
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
        },
        check=True,
        timeout=60,
    )
    return {word.strip() for word in answer.read_text().split("\x0b") if word.strip()}


def test_tab_completes_commands_flavors_and_the_registry_s_names(
    initialised: Path, terminal: Callable[..., Result]
) -> None:
    for words in (
        ["orchestrator", "register", "big", "--type=local", "--max-workers=2"],
        ["stack", "register", "cloud", "-m", "default", "-a", "default", "-o", "big"],
    ):
        assert terminal(*words).code == 0
    quick_notebook(initialised)
    (initialised / "data.csv").write_text("a\n1\n")

    assert complete(initialised, "stackmagic st") == {"stack", "step-operator"}
    assert complete(initialised, "stackmagic stack set ") >= {"default", "cloud"}
    assert complete(initialised, "stackmagic stack register new -o ") >= {"default", "big"}
    assert complete(initialised, "stackmagic orchestrator describe b") == {"big"}
    assert complete(initialised, "stackmagic artifact-store register x --type ") == {
        "local",
        "gcp",
        "s3",
        "azure",
    }
    assert complete(initialised, "stackmagic pipeline run --st") == {"--stack"}
    assert complete(initialised, "stackmagic pipeline run --stack c") == {"cloud"}
    offered = complete(initialised, "stackmagic pipeline run ")
    assert "quick.ipynb" in offered and "data.csv" not in offered
