"""An orchestrator of one's own, as a third party ships it: the README's package, pip-installed.

The package is written from the README's "Writing a flavor" blocks (each names its file on
its first line), installed by pip (offline, without build isolation: its backend, hatchling,
is a test dependency) into a fresh venv that also sees this venv's packages, and the README's
commands run with that venv's stackmagic. The flavor is listed with its options; a stack on it
runs a fan-out pipeline one step at a time, each under the launcher; a failed step stops the
run; a cancel stops the step's process and its kernel; a missing launcher is refused before
anything is recorded; `pipeline schedule` refuses in one line, as the orchestrator cannot
schedule. A broken flavor package is tested in tests/test_flavors.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import psutil
from conftest import ended, wait_for
from readme import Block, Command, Walk, blocks, commands

from notebooks import write_notebook
from stackmagic.open_stack import OpenStack
from stackmagic.registry import Registry
from stackmagic.stores.metadata import RunRecord
from stackmagic.stores.models import RunStatus, StepStatus

SECTION = "Writing a flavor"
#: A progress line of `pipeline run` outside a terminal: "  double: running".
PROGRESS = re.compile(r"^  (\w+): (running|completed|cached|failed)", re.MULTILINE)


def package_files(folder: Path, *shown: Block) -> None:
    """Write the README's blocks as the files their first line names (``# pyproject.toml``)."""
    folder.mkdir()
    for block in shown:
        name = block.text.splitlines()[0].removeprefix("# ")
        (folder / name).write_text(block.text)


def venv_seeing_these_packages(folder: Path) -> Path:
    """A fresh venv whose Python also imports this venv's packages (stackmagic, pip, hatchling);
    what pip installs with it lands in the new venv only. Its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]  # its .pth files too: stackmagic's editable install
    (Path(site) / "these-packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def write_train(project: Path) -> None:
    """A fan-out: double and square both read load; square says how its step ran."""
    write_notebook(
        project / "train.ipynb",
        "import os\nimport time\n%load_ext stackmagic",
        "%%step load\ndata = [1, 2, 3]",
        "%%step double\ntime.sleep(pause)\nassert scale > 0, 'scale must be positive'\n"
        "doubled = [x * scale for x in data]",
        "%%step square\nsquared = [x * x for x in data]\n"
        "ran_with = {'niceness': os.nice(0), 'threads': os.environ.get('OMP_NUM_THREADS')}",
        parameters="scale = 2\npause = 0",
    )


def latest_run(project: Path) -> RunRecord:
    """The newest run's record, through the default stack: same stores, a flavor known here."""
    with OpenStack.open(Registry.open(project), "default") as opened:
        return opened.metadata.run("latest")


def statuses(record: RunRecord) -> dict[str, str]:
    return {step.name: step.status for step in record.steps}


def output(record: RunRecord, step: str, name: str) -> object:
    """An output's value, as the json materializer left it in the local artifact store."""
    return json.loads(Path(record.step(step).outputs[name].uri).read_text())


def test_the_readme_orchestrator_package_installs_and_runs_a_pipeline(
    project: Path, tmp_path: Path
) -> None:
    python = venv_seeing_these_packages(tmp_path / "venv")
    toml, module = blocks(SECTION, "toml")[1], blocks(SECTION, "python")[1]
    package_files(project / "serial-orchestrator", toml, module)
    write_train(project)
    walk = Walk(
        project,
        substitutions={
            "pip": (str(python), "-m", "pip"),
            "install": ("install", "--no-deps", "--no-build-isolation", "--no-index"),
            "stackmagic": (str(python), "-m", "stackmagic"),
        },
    )

    def stackmagic(*words: str, expect_code: int = 0) -> str:
        walk.run(Command(("stackmagic", *words)), expect_code=expect_code)
        return walk.said[-1]

    stackmagic("init")
    [install, flavors, register, stack, run] = [
        command for block in blocks(SECTION, "bash") for command in commands(block.text)
    ]
    walk.run(install)
    assert list((tmp_path / "venv" / "lib").glob("python*/site-packages/serial_orchestrator.py"))
    listed = walk.run(flavors)
    assert (
        "serial (Runs the steps one at a time, each in a process started through a launcher)"
        in listed
    )
    assert "--launcher=TEXT\n        Command that starts each step: nice -n 10" in listed
    assert "--environment=K=V,...\n        More environment variables for the steps" in listed
    walk.run(register)
    walk.run(stack)
    walk.run(run)
    walk.assert_no_stale_substitution()

    # one step at a time, in the bundle's order, each under the launcher, with the environment
    assert PROGRESS.findall(walk.said[-1]) == [
        (step, state) for step in ("load", "double", "square") for state in ("running", "completed")
    ], walk.said[-1]
    first = latest_run(project)
    assert first.status == RunStatus.COMPLETED and first.stack["orchestrator"]["flavor"] == "serial"
    load, double, square = first.steps
    assert load.ended_at and double.started_at and load.ended_at <= double.started_at
    assert double.ended_at and square.started_at and double.ended_at <= square.started_at
    assert output(first, "double", "doubled") == [2, 4, 6]
    assert output(first, "square", "ran_with") == {
        "niceness": min(19, os.nice(0) + 10),  # the README's launcher: nice -n 10
        "threads": "1",  # its --environment
    }

    # a failed step stops the run: the steps after it are skipped, independent ones too
    failed = stackmagic(
        "pipeline", "run", "train.ipynb", "--stack", "gentle", "-p", "scale", "0", expect_code=1
    )
    assert "step 'double' failed: AssertionError: scale must be positive" in failed
    assert statuses(latest_run(project)) == {
        "load": StepStatus.CACHED,
        "double": StepStatus.FAILED,
        "square": StepStatus.SKIPPED,
    }

    # a cancel stops the step's process and its kernel; the steps after it are skipped
    before = latest_run(project).id
    with subprocess.Popen(
        [python, "-m", "stackmagic", "pipeline", "run", "train.ipynb", "--stack", "gentle"]
        + ["-p", "pause", "60"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as started:
        running = wait_for(
            lambda: (
                (latest := latest_run(project)).id != before
                and statuses(latest)["double"] == StepStatus.RUNNING
                and latest
            ),
            what="step double running",
        )
        step_processes = wait_for(  # the step's, under nice, and its kernel's
            lambda: (
                len(found := psutil.Process(started.pid).children(recursive=True)) >= 2 and found
            ),
            what="the step's kernel started",
        )
        stackmagic("pipeline", "cancel", running.id)
        _, err = started.communicate(timeout=60)
    assert started.returncode == 1 and f"run {running.id} of train was cancelled" in err, err
    assert statuses(latest_run(project)) == {
        "load": StepStatus.CACHED,
        "double": StepStatus.CANCELLED,
        "square": StepStatus.SKIPPED,
    }
    wait_for(lambda: all(ended(p.pid) for p in step_processes), 10, "the step's processes end")

    # a launcher this machine lacks: one line, before anything is recorded
    stackmagic("orchestrator", "update", "gentle", "--launcher=no-such-launcher")
    refused = stackmagic("pipeline", "run", "train.ipynb", "--stack", "gentle", expect_code=2)
    assert refused == "stackmagic: error: the launcher 'no-such-launcher' is not installed here\n"
    assert latest_run(project).id == running.id

    # it has no schedule(): `pipeline schedule` says so in one line, with a crontab line
    schedule = ("pipeline", "schedule", "train.ipynb", "--cron", "0 3 * * *", "--stack", "gentle")
    unscheduled = stackmagic(*schedule, expect_code=2)
    assert (
        unscheduled.startswith(
            "stackmagic: error: the serial orchestrator 'gentle' of stack 'gentle' cannot run "
            "pipelines on a schedule"
        )
        and unscheduled.count("\n") == 1
    ), unscheduled
    assert (
        "0 3 * * * cd " in unscheduled and "pipeline run train.ipynb --stack gentle" in unscheduled
    )
