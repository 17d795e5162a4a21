"""No litter: kernels die with their run, stopped runs clean up, ``stackmagic gc`` removes the rest.

Real runs throughout: the ``stackmagic`` console script killed or interrupted
as a user would, real kernels, the local store and an S3 bucket (moto).
Each test has a temporary folder of its own, so gc never sees other programs' folders.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result, ended, started_run, wait_for
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from team import bucket_options
from traitlets.config import Config

import stackmagic
from notebooks import write_notebook
from stackmagic.stores.artifacts import ArtifactStore, is_temporary

pytestmark = pytest.mark.kernel

#: A step that appends a byte to a file every 20 ms until its kernel stops.
WRITER = (
    "%%step write\nimport os, time\n"
    "with open('kernel.pid', 'w') as handle:\n    handle.write(str(os.getpid()))\n"
    "with open('growing.txt', 'a') as out:\n"
    "    while True:\n        out.write('x')\n        out.flush()\n        time.sleep(0.02)\n"
    "done = True"
)
#: Holds a stackmagic temporary folder, as a run in progress does, until its stdin closes.
HOLDER = (
    "import sys\nfrom stackmagic.scratch import ScratchFolder\n"
    "folder = ScratchFolder('bundle')\nprint(folder.path, flush=True)\nsys.stdin.read()\n"
)


@pytest.fixture
def scratch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder of this test and of every process it starts."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def killed_run(notebook: Path) -> None:
    """Start the writer notebook's run and SIGKILL its process once the step writes."""
    growing = notebook.parent / "growing.txt"
    with started_run(notebook) as driver:
        wait_for(lambda: growing.exists() and growing.stat().st_size > 3, what="the step to write")
        driver.kill()
        driver.wait()


def settled_size(path: Path) -> int:
    """The file's size once two looks half a second apart agree; 0 until then."""
    before = path.stat().st_size
    time.sleep(0.5)
    return before if path.stat().st_size == before else 0


def an_hour_ago(*paths: Path) -> None:
    moment = time.time() - 2 * 3600
    for path in paths:
        os.utime(path, (moment, moment))


def contents(store: ArtifactStore) -> dict[str, bytes]:
    return {uri: store.read_bytes(uri) for uri in store.find(store.root)}


def anew(store: ArtifactStore) -> ArtifactStore:
    """The store as it is now: a bucket's client keeps listings, which gc changed meanwhile."""
    return ArtifactStore(
        store.root, {**store.describe()["storage_options"], "skip_instance_cache": True}
    )


def shown(text: str) -> dict[str, str]:
    """The labelled lines of a command's text: label -> value."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def latest_run(cli: Callable[..., Result]) -> str:
    return json.loads(cli("pipeline", "runs", "--json").out)[0]["id"]


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)
def test_a_step_kernel_dies_with_its_killed_run(initialised: Path, scratch_dir: Path) -> None:
    killed_run(write_notebook(initialised / "writer.ipynb", WRITER))
    growing = initialised / "growing.txt"
    # the run's process is reaped: Linux signalled its children as it died
    when_reaped = growing.stat().st_size
    kernel = int((initialised / "kernel.pid").read_text())
    final = wait_for(lambda: settled_size(growing), what="the file to stop growing")
    wait_for(lambda: ended(kernel), what="the kernel to end")
    assert final - when_reaped <= 1, (  # one write may have been under way as the run died
        f"the kernel wrote {final - when_reaped} bytes after its run was killed"
    )


def test_an_interrupted_run_leaves_no_half_saved_artifact(
    initialised: Path, scratch_dir: Path
) -> None:
    notebook = write_notebook(
        initialised / "slow_save.ipynb",
        "import time\n\nclass SlowToSave:\n    def __reduce__(self):\n"
        "        time.sleep(300)\n        return (int, ())",
        "%%step make\nvalue = SlowToSave()",
    )
    store = initialised / ".stackmagic" / "artifacts"

    def saving() -> list[Path]:
        return [path for path in store.rglob("*") if is_temporary(str(path))]

    with started_run(notebook) as driver:
        wait_for(saving, what="the step to start saving its output")
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=60) == 130
    assert saving() == [], "the half-saved artifact stayed in the store"
    assert list(scratch_dir.iterdir()) == [], "the run left temporary folders"


def test_gc_removes_what_a_killed_run_left_and_nothing_in_use(
    initialised: Path, scratch_dir: Path, cli: Callable[..., Result]
) -> None:
    kept = stackmagic.run(
        write_notebook(initialised / "kept.ipynb", "%%step a\nx = [1, 2]", "%%step b\ny = x + [3]")
    )
    store = initialised / ".stackmagic" / "artifacts"
    an_hour_ago(*(store / "kept").rglob("*"))  # only its record protects it now, not its age
    killed_run(write_notebook(initialised / "writer.ipynb", WRITER))
    left_by_kill = sorted(str(folder) for folder in scratch_dir.glob("stackmagic-*"))
    assert left_by_kill, "a killed run cannot remove its temporary folders"
    # what a step killed as it saved leaves: an output its run never recorded, a half-written one
    step_folder = store / "writer" / latest_run(cli) / "write"
    step_folder.mkdir(parents=True, exist_ok=True)
    unrecorded, stale = step_folder / "partial.json", step_folder / ".big.pkl.tmp-0123456789abcdef"
    unrecorded.write_text("[1]")
    stale.write_bytes(b"\0" * 5000)
    an_hour_ago(unrecorded, stale)
    fresh = store / "kept" / kept.id / "b" / ".z.json.tmp-fedcba9876543210"  # being written now
    fresh.write_text("{")
    old_style = scratch_dir / "stackmagic-bundle-unlocked"  # an older stackmagic's: no lock file
    (old_style / "bundle").mkdir(parents=True)
    an_hour_ago(old_style / "bundle", old_style)
    new_old_style = scratch_dir / "stackmagic-step-unlocked"
    new_old_style.mkdir()
    not_ours = scratch_dir / "stackmagic-notes"  # another program's, named alike
    not_ours.mkdir()
    an_hour_ago(not_ours)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        in_use = Path(holder.stdout.readline().strip())
        kept_files = {
            path: path.read_bytes() for path in (store / "kept").rglob("*") if path.is_file()
        }
        everything = sorted(str(path) for path in [*store.rglob("*"), *scratch_dir.rglob("*")])

        dry = cli("gc", "--dry-run")
        assert dry.code == 0, dry.err
        assert "Would free" in dry.out and "nothing was deleted" in dry.out
        said = shown(dry.out)
        assert said["temporary files in the artifact store"] == "1 file, 5.0 kB"
        assert said["stackmagic folders in the temporary folder"].startswith(
            f"{len(left_by_kill) + 1} folders, "
        )
        assert said["outputs no run recorded"] == "1 file, 3 B"
        assert (
            sorted(str(path) for path in [*store.rglob("*"), *scratch_dir.rglob("*")]) == everything
        )

        done = cli("gc", "--json")
        assert done.code == 0, done.err
        removed = json.loads(done.out)["kinds"]
        assert sorted(removed["temporary_folders"]["items"]) == sorted(
            [*left_by_kill, str(old_style)]
        )
        assert removed["temporary_files"]["items"] == [str(stale)]
        assert removed["unrecorded_outputs"]["items"] == [str(unrecorded)]
        assert "collected_artifacts" not in removed, "no run is collected unless asked"
        assert not stale.exists() and not unrecorded.exists()
        assert not any(Path(folder).exists() for folder in left_by_kill) and not old_style.exists()
        assert fresh.exists(), "a temporary file written lately may be a live one"
        assert in_use.exists() and new_old_style.exists() and not_ours.exists()
        assert {path: path.read_bytes() for path in kept_files} == kept_files
        assert cli("pipeline", "load", kept.id, "b.y").code == 0
        again = cli("gc")
        assert again.out.startswith("Freed 0 B"), again.out
    finally:
        holder.stdin.close()
        holder.wait()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_keep_last_collects_old_runs_but_what_kept_runs_reuse(
    where: str,
    initialised: Path,
    scratch_dir: Path,
    cli: Callable[..., Result],
    request: pytest.FixtureRequest,
) -> None:
    store = ArtifactStore(str(initialised / ".stackmagic" / "artifacts"))
    if where == "s3":
        _, flags, store = bucket_options("s3", request)
        for words in (
            ["artifact-store", "register", "bucket", *flags],
            ["stack", "register", "s3", "-m", "default", "-a", "bucket", "-o", "default"],
            ["stack", "set", "s3"],
        ):
            assert cli(*words).code == 0
    notebook = write_notebook(
        initialised / "two.ipynb",
        "%%step a\nx = [first] * 1000",
        "%%step b\ny = len(x) + second",
        parameters="first = 1\nsecond = 1",
    )
    old = stackmagic.run(notebook)
    new = stackmagic.run(notebook, parameters={"second": 2})
    assert [step.status for step in new.steps.values()] == ["cached", "completed"]
    reused = new.record.step("a").outputs["x"].uri
    assert f"/{old.id}/" in reused, "a cached step's output is a file of the run that made it"
    dropped = old.record.step("b").outputs["y"].uri
    before = contents(store)

    dry = cli("gc", "--keep-last", "1", "--dry-run", "--json")
    planned = json.loads(dry.out)
    assert planned["runs"] == [old.id]
    collected = planned["kinds"]["collected_artifacts"]["items"]
    assert dropped in collected and reused not in collected
    assert old.record.step("a").notebook_uri in collected, "executed notebooks go too"
    assert contents(anew(store)) == before, "a dry run deletes nothing"

    done = cli("gc", "--keep-last", "1")
    assert done.code == 0, done.err
    store = anew(store)
    assert done.out.startswith("Freed ") and f"{old.id}  two" in done.out
    assert not store.exists(dropped) and not store.exists(old.record.step("b").notebook_uri)
    assert store.exists(reused), "an artifact a kept run uses stays"
    assert {uri for uri in before if f"/{new.id}/" in uri} <= set(store.find(store.root))
    assert cli("pipeline", "load", new.id, "a.x").code == 0
    gone = cli("pipeline", "load", old.id, "b.y")
    assert gone.code == 2 and gone.err.count("\n") == 1
    assert f"the artifacts of run {old.id} were deleted by `stackmagic gc`" in gone.err
    assert json.loads(cli("pipeline", "describe", old.id, "--json").out)["collected_at"]

    reusing = stackmagic.run(notebook, parameters={"second": 3})
    assert [step.status for step in reusing.steps.values()] == ["cached", "completed"]
    rerun = stackmagic.run(notebook)  # as the collected run was: its result is gone, made anew
    assert [step.status for step in rerun.steps.values()] == ["cached", "completed"]
    assert rerun.outputs("b") == {"y": 1001}


def test_gc_never_touches_a_running_run(
    initialised: Path, scratch_dir: Path, cli: Callable[..., Result]
) -> None:
    finished = stackmagic.run(write_notebook(initialised / "done.ipynb", "%%step a\nx = 1"))
    notebook = write_notebook(
        initialised / "waiting.ipynb",
        "%%step first\nx = 41",
        "%%step second\nimport os, time\nopen('started', 'w').close()\n"
        "while not os.path.exists('go'):\n    time.sleep(0.1)\ny = x + 1",
    )
    with started_run(notebook) as driver:
        wait_for(lambda: (initialised / "started").exists(), what="the second step to start")
        running = latest_run(cli)
        result = cli("gc", "--older-than", "0d", "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["runs"] == [finished.id]
        (initialised / "go").touch()
        assert driver.wait(timeout=120) == 0
    described = json.loads(cli("pipeline", "describe", running, "--json").out)
    assert described["status"] == "completed" and described["collected_at"] is None
    assert json.loads(cli("pipeline", "load", running, "first.x", "--json").out)["x"]
    assert "y  42" in cli("pipeline", "load", running, "second.y").out


@pytest.mark.parametrize(
    "words, said",
    [
        (["--older-than", "yesterday"], "expects an age such as 30d, 12h or 2w, or a date"),
        (["--older-than", "2026-02-30"], "expects an age such as 30d"),
        (["--older-than", "999999999w"], "reaches back before the year 1"),
        (["--keep-last", "-1"], "expects a whole number, 0 or more, not '-1'"),
        (["--keep-last", "²"], "expects a whole number"),
    ],
)
def test_bad_gc_input_is_one_line_and_removes_nothing(
    words: list[str], said: str, initialised: Path, scratch_dir: Path, cli: Callable[..., Result]
) -> None:
    stale = initialised / ".stackmagic" / "artifacts" / ".x.json.tmp-0123456789abcdef"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("{")
    an_hour_ago(stale)
    result = cli("gc", *words)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and said in result.err and "Traceback" not in result.err
    assert stale.exists()


def test_gc_as_a_magic(
    initialised: Path, scratch_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # no history file left for exit to write to
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "stackmagic")
        litter = scratch_dir / "stackmagic-kernels-unlocked"
        litter.mkdir()
        an_hour_ago(litter)
        with capture_output() as captured:
            shell.run_line_magic("gc", "--dry-run")
        assert "Would free" in captured.outputs[0].data["text/html"] and litter.exists()
        with pytest.raises(UsageError, match=r"%gc: argument --keep-last: expects a whole number"):
            shell.run_line_magic("gc", "--keep-last -1")
        with capture_output():
            shell.run_line_magic("gc", "")
        assert not litter.exists()
    finally:
        InteractiveShell.clear_instance()
