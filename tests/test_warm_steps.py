"""Warm steps: the setup runs once per run, and every step's kernel is a fork of it.

Real kernels and stores throughout. A warm run must be indistinguishable from
a run with a fresh kernel per step, except for its speed: the same executed
notebooks, the same isolation between steps, the same failures. Where forking
is unsafe the run falls back to fresh kernels and says why in one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ended, started_run, wait_for

from notebooks import write_notebook
from stackmagic.step_io import RESULT_MIME_TYPE

pytestmark = pytest.mark.kernel

#: The setup notes each time it runs, in a file outside the project, which no step claims
#: (opened and closed: nothing stays open).
COUNTED_SETUP = (
    "import os\nimport numpy as np\n"
    "with open('../setup-runs.txt', 'a') as runs:\n    runs.write('ran\\n')\n"
    "print('setup ran')\nnp.random.seed(7)"
)
FALLBACK = "steps start in fresh kernels: "


def setup_runs(project: Path) -> int:
    return len((project.parent / "setup-runs.txt").read_text().splitlines())


def use_cold_stack(terminal) -> None:
    """A stack whose local orchestrator starts a fresh kernel for every step."""
    for command in (
        ["orchestrator", "register", "cold", "--type=local", "--warm-steps=false"],
        ["stack", "register", "cold", "-m", "default", "-a", "default", "-o", "cold"],
        ["stack", "set", "cold"],
    ):
        assert terminal(*command).code == 0


def executed(terminal, run: str = "latest") -> dict[str, dict]:
    """Each step's executed notebook, by step name."""
    described = json.loads(terminal("pipeline", "describe", run, "--json").out)
    return {
        step["name"]: json.loads(Path(step["notebook"]).read_text())
        for step in described["steps"]
        if step["notebook"]
    }


def run_warm(terminal, notebook: Path) -> dict[str, dict]:
    """Run the notebook, which must stay warm; each step's executed notebook, by step name."""
    run = terminal("pipeline", "run", str(notebook), "--progress", "lines")
    assert run.code == 0, run.err
    assert FALLBACK not in run.err
    return executed(terminal)


def as_seen(notebook: dict) -> list[tuple]:
    """What a reader of an executed notebook sees: sources, counts and outputs, not timings."""
    seen = []
    for cell in notebook["cells"]:
        outputs = []
        for output in cell.get("outputs", []):
            data = dict(output.get("data", {}))
            if "image/png" in data:  # the same figure, drawn twice, need not be the same bytes
                data["image/png"] = "a picture"
            if RESULT_MIME_TYPE in data:  # what the step saved, where: under the run's id
                data[RESULT_MIME_TYPE] = sorted(data[RESULT_MIME_TYPE]["outputs"])
            text = re.sub(r"ipykernel_\d+", "ipykernel_PID", "".join(output.get("text", "")))
            outputs.append((output["output_type"], text, data, output.get("ename")))
        source = cell["source"]
        if "injected-parameters" in cell["metadata"].get("tags", []):
            source = "the run's parameters"  # the run id differs from run to run
        seen.append((cell["cell_type"], source, cell.get("execution_count"), outputs))
    return seen


TUTORIAL = [
    COUNTED_SETUP + "\nimport pandas as pd\nimport matplotlib.pyplot as plt",
    "%%step load\ndf = pd.DataFrame({'x': np.random.rand(5), 'y': range(5)})\ndf.describe()",
    "%%step plot\nplt.plot(df['x'])\nplt.title('x')\nplt.show()\nprint('drawn')",
    "%%step stats\nimport warnings\nwarnings.warn('a warning from a step')\n"
    "total = df['y'].sum()\ntotal",
    "%%step report\nprint(f'total {total}')\nraise_later = In[-1][:10]",
]


def test_a_warm_run_executes_the_setup_once_and_leaves_the_notebooks_a_cold_run_leaves(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(initialised / "tutorial.ipynb", *TUTORIAL, parameters="rows = 5")
    warm = terminal("pipeline", "run", str(notebook), "--no-cache", "-p", "rows", "6")
    assert warm.code == 0, warm.err
    assert FALLBACK not in warm.err
    assert setup_runs(initialised) == 1, "the setup ran again for a step"
    warm_notebooks = executed(terminal)

    use_cold_stack(terminal)
    cold = terminal("pipeline", "run", str(notebook), "--no-cache", "-p", "rows", "6")
    assert cold.code == 0, cold.err
    assert setup_runs(initialised) == 1 + 4, "a fresh kernel per step runs the setup per step"
    cold_notebooks = executed(terminal)

    assert sorted(warm_notebooks) == ["load", "plot", "report", "stats"]
    for step, cold_notebook in cold_notebooks.items():
        assert as_seen(warm_notebooks[step]) == as_seen(cold_notebook), step
    cells = warm_notebooks["report"]["cells"]
    (setup_cell,) = [c for c in cells if c["metadata"].get("stackmagic", {}).get("role") == "setup"]
    assert setup_cell["execution_count"] == 3  # after the parameters and the injected ones
    assert "".join(setup_cell["outputs"][0]["text"]) == "setup ran\n"
    figure = [o for c in warm_notebooks["plot"]["cells"] for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in figure), "the inline plot was lost"


def test_steps_forked_from_one_template_do_not_share_state(initialised: Path) -> None:
    import stackmagic

    notebook = write_notebook(
        initialised / "isolated.ipynb",
        COUNTED_SETUP + "\nimport json\nseen = []",
        "%%step left\nimport time\njson.left_was_here = True\nglobals()['hidden'] = 1\n"
        "os.environ['LEFT'] = '1'\ntime.sleep(1)\na = np.random.rand()",
        "%%step right\nimport time\ntime.sleep(1)\n"
        "b = [hasattr(json, 'left_was_here'), 'hidden' in globals(), 'LEFT' in os.environ,\n"
        "     np.random.rand()]",
    )
    run = stackmagic.run(notebook)
    assert run.status == "completed"
    assert setup_runs(initialised) == 1
    left, right = run.outputs("left")["a"], run.outputs("right")["b"]
    assert right[:3] == [False, False, False], "a sibling step saw what another step did"
    # the setup seeds numpy: each step starts from that seed, as with a fresh kernel per step
    assert right[3] == left


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_temporary_folder_too_deep_for_a_socket_path_still_runs(
    initialised: Path, terminal, tmp_path: Path, warm: bool
) -> None:
    """Kernels talk over Unix sockets in the temporary folder, whose path a socket's name
    cannot exceed (107 bytes on Linux): a deep TMPDIR, as CI runners and containers set,
    must not fail every step with "File name too long"."""
    deep = tmp_path / ("a-temporary-folder-nested-deep-" * 3) / "tmp"
    deep.mkdir(parents=True)
    assert len(str(deep)) > 110
    if not warm:
        use_cold_stack(terminal)
    notebook = write_notebook(
        initialised / "deep.ipynb", COUNTED_SETUP, "%%step a\nx = 1", "%%step b\nprint(x + 1)"
    )
    run = terminal(
        "pipeline", "run", str(notebook), "--progress", "lines", env={"TMPDIR": str(deep)}
    )
    assert run.code == 0, run.err
    assert FALLBACK not in run.err
    (step_b,) = [c for c in executed(terminal)["b"]["cells"] if "print(x + 1)" in c["source"]]
    assert ["".join(o["text"]) for o in step_b["outputs"] if "text" in o] == ["2\n"]


def test_a_failing_or_killed_step_leaves_its_siblings_and_the_template_running(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "rough.ipynb",
        COUNTED_SETUP,
        "%%step boom\nraise ValueError('bad row')",
        "%%step killed\nimport signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "%%step fine\nimport time\ntime.sleep(2)\nvalue = 41",
        "%%step later\nresult = value + 1",
    )
    run = terminal("pipeline", "run", str(notebook))
    assert run.code == 1
    steps = {
        step["name"]: step
        for step in json.loads(terminal("pipeline", "describe", "latest", "--json").out)["steps"]
    }
    assert steps["boom"]["status"] == "failed"
    assert steps["boom"]["error"].startswith("ValueError: bad row")
    assert steps["killed"]["status"] == "failed"
    assert "died" in steps["killed"]["error"].lower()
    # started after both failures, from the same template: it is still there
    assert steps["fine"]["status"] == steps["later"]["status"] == "completed"
    assert setup_runs(initialised) == 1


def _processes_in(folder: Path) -> list[int]:
    """Processes (not this one) whose working directory is ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc, "cwd").resolve() == folder.resolve():
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def test_ctrl_c_stops_the_template_and_every_fork_at_once(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "slow.ipynb",
        COUNTED_SETUP,
        "%%step one\nimport time\nopen('one.pid', 'w').write(str(os.getpid()))\ntime.sleep(120)",
        "%%step two\nimport time\nopen('two.pid', 'w').write(str(os.getpid()))\ntime.sleep(120)",
    )
    with started_run(notebook) as process:
        wait_for(
            lambda: (initialised / "one.pid").exists() and (initialised / "two.pid").exists(),
            what="both steps starting",
        )
        steps = [int((initialised / f"{n}.pid").read_text()) for n in ("one", "two")]
        assert len(_processes_in(initialised)) >= 4  # the run, the template, two forks
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert time.monotonic() - started < 10, "Ctrl-C waited for the steps to finish"
    wait_for(lambda: not _processes_in(initialised), timeout=10, what="every process ending")
    for pid in steps:  # a zombie is ended: an orphan where PID 1 reaps none stays one
        assert ended(pid), "a step's kernel outlived its run"


def test_ctrl_c_during_a_long_setup_stops_the_run_at_once(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "slow_setup.ipynb",
        COUNTED_SETUP + "\nimport time\nopen('setting-up', 'w').close()\ntime.sleep(120)",
        "%%step a\nx = 1",
    )
    with started_run(notebook) as process:
        wait_for(lambda: (initialised / "setting-up").exists(), what="the setup to start")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert time.monotonic() - started < 10, "Ctrl-C waited for the setup to finish"
        assert process.stderr is not None
        assert FALLBACK not in process.stderr.read()
    wait_for(lambda: not _processes_in(initialised), timeout=10, what="every process ending")


UNSAFE_SETUPS = {
    "a thread": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), name='poller', daemon=True).start()",
        "the setup started threads (poller)",
    ),
    "an open file": (
        "log = open('steps.log', 'w')",
        "the setup keeps {project}/steps.log open, which forked steps would share",
    ),
    "an event loop": (
        "import asyncio\nawait asyncio.sleep(0)",
        "the setup keeps an event loop open",
    ),
    # a fork whose parent used GNU OpenMP hangs in its first parallel region
    "an OpenMP pool": (
        "from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "X = np.random.rand(2000, 5)\ny = (X[:, 0] > 0.5).astype(int)\n"
        "HistGradientBoostingClassifier(max_iter=5).fit(X, y)",
        "native thread",
    ),
}


@pytest.mark.parametrize("what", UNSAFE_SETUPS)
def test_a_setup_unsafe_to_fork_falls_back_to_fresh_kernels_and_says_why(
    initialised: Path, terminal, what: str
) -> None:
    addition, reason = UNSAFE_SETUPS[what]
    notebook = write_notebook(
        initialised / "unsafe.ipynb",
        f"{COUNTED_SETUP}\n{addition}",
        "%%step a\nx = 1",
        "%%step b\ny = x + 1",
    )
    run = terminal("pipeline", "run", str(notebook), "--progress", "lines")
    assert run.code == 0, run.err
    notes = [line for line in run.err.splitlines() if line.startswith(FALLBACK)]
    assert len(notes) == 1, run.err
    assert reason.format(project=initialised) in notes[0]
    assert setup_runs(initialised) == 1 + 2  # the template's try, then one per fresh kernel


def test_a_kernel_that_is_not_ipykernel_falls_back(
    initialised: Path, terminal, tmp_path: Path
) -> None:
    spec = tmp_path / "jupyter" / "kernels" / "wrapped"
    spec.mkdir(parents=True)
    command = f"exec {sys.executable} -m ipykernel_launcher -f $0"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["sh", "-c", command, "{connection_file}"],
                "display_name": "Wrapped Python",
                "language": "python",
            }
        )
    )
    notebook = write_notebook(initialised / "wrapped.ipynb", COUNTED_SETUP, "%%step a\nx = 1")
    document = nbformat.read(notebook, as_version=4)
    document.metadata["kernelspec"] = {"name": "wrapped", "display_name": "Wrapped Python"}
    nbformat.write(document, notebook)
    run = terminal(
        "pipeline",
        "run",
        str(notebook),
        "--progress",
        "lines",
        env={"JUPYTER_PATH": str(tmp_path / "jupyter")},
    )
    assert run.code == 0, run.err
    assert f"{FALLBACK}the kernel 'wrapped' is not ipykernel" in run.err
    assert setup_runs(initialised) == 1


def test_a_failing_setup_fails_each_step_where_the_setup_failed(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "broken.ipynb",
        COUNTED_SETUP + "\nraise RuntimeError('no database')",
        "%%step a\nx = 1",
    )
    run = terminal("pipeline", "run", str(notebook), "--progress", "lines")
    assert run.code == 1
    assert f"{FALLBACK}the setup raised RuntimeError: no database in the template" in run.err
    step = json.loads(terminal("pipeline", "describe", "latest", "--json").out)["steps"][0]
    assert step["error"] == "RuntimeError: no database (in cell 1 of broken.ipynb)"


def test_a_tutorial_setup_with_matplotlib_inline_and_shell_commands_stays_warm(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "magics.ipynb",
        COUNTED_SETUP + "\nimport matplotlib.pyplot as plt\n%matplotlib inline\n"
        "%config InlineBackend.figure_format = 'png'\n%load_ext autoreload\n%autoreload 2\n"
        "!echo from a shell",
        "%%step draw\nplt.plot([1, 2, 3])\nplt.show()\nfigures = 1",
        "%%step count\ntotal = figures + 1",
    )
    draw = run_warm(terminal, notebook)["draw"]
    assert setup_runs(initialised) == 1
    (setup,) = [
        c for c in draw["cells"] if c["metadata"].get("stackmagic", {}).get("role") == "setup"
    ]
    assert "from a shell" in "".join("".join(o.get("text", "")) for o in setup["outputs"])
    outputs = [o for c in draw["cells"] for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the inline figure is missing"


def test_files_the_setup_writes_are_each_steps_as_with_a_fresh_kernel(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "configured.ipynb",
        COUNTED_SETUP + "\nimport json\nwith open('config.json', 'w') as out:\n"
        "    json.dump({'rows': 5}, out)",
        "%%step first\nrows = json.load(open('config.json'))['rows']",
        "%%step second\ntotal = rows * 2",
    )
    outputs = {}
    for stack in ("warm", "cold"):
        if stack == "cold":
            use_cold_stack(terminal)
        assert terminal("pipeline", "run", str(notebook), "--no-cache").code == 0
        described = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
        outputs[stack] = {step["name"]: sorted(step["outputs"]) for step in described["steps"]}
    assert outputs["warm"] == outputs["cold"]
    assert "file:config.json" in outputs["warm"]["second"]


def test_a_setup_with_progress_bars_and_a_plot_stays_warm(initialised: Path, terminal) -> None:
    """tqdm's monitor thread is stopped before forking; matplotlib reopens its fonts in forks."""
    notebook = write_notebook(
        initialised / "eda.ipynb",
        COUNTED_SETUP + "\nfrom tqdm.auto import tqdm\nimport matplotlib.pyplot as plt\n"
        "rows = [r for r in tqdm(range(50), desc='loading')]\n"
        "plt.plot(rows)\nplt.title('rows')\nplt.show()",
        "%%step left\nleft = sum(r for r in tqdm(rows, desc='left'))\nplt.title('left')\nplt.show()",
        "%%step right\nright = sum(r for r in tqdm(rows, desc='right'))",
    )
    left = run_warm(terminal, notebook)["left"]
    assert setup_runs(initialised) == 1
    shown = "".join(  # in a notebook, tqdm.auto draws widgets, with a text form
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
        for c in left["cells"]
        for o in c.get("outputs", [])
    )
    assert "loading: " in shown and "left: " in shown


def test_a_fork_left_a_zombie_counts_as_ended() -> None:
    """A fork whose template died first is an orphan; where nothing reaps orphans it stays a
    zombie, and a run cancelled then would wait forever on a step's kernel that "lives"."""
    import subprocess

    from stackmagic.orchestrators.managers import ForkedProcess

    child = subprocess.Popen(["true"])  # not waited for: it stays a zombie once it ends
    try:
        wait_for(
            lambda: (
                Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
            ),
            what="the child to end",
        )
        os.kill(child.pid, 0)  # signal 0 still finds a zombie
        assert ForkedProcess(child.pid).poll() == -1
    finally:
        child.wait()
    running = subprocess.Popen(["sleep", "30"])
    try:
        assert ForkedProcess(running.pid).poll() is None
    finally:
        running.kill()
        running.wait()
