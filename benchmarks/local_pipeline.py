"""How long pipelines take on the default local stack, next to running notebooks by hand.

Everything happens in a temporary folder, with ``STACKMAGIC_HOME`` pointed
inside it, so the user's own stackmagic folder is never touched:

    python benchmarks/local_pipeline.py [--repeat 3]

Each round measures, one after the other so all see the same machine load:

* a 10-step chain of trivial steps, each reading the previous step's output,
  run with ``stackmagic.run(notebook, no_cache=True)``;
* the same work as a user would write it by hand: a loop of
  ``papermill.execute_notebook`` over 10 one-step notebooks;
* those 10 notebooks as a ploomber DAG of ``NotebookRunner`` tasks on its
  ``Serial`` executor, ``dag.build(force=True)`` (skipped if ploomber is not
  installed; ``pip install ploomber`` to include it);
* the chain's first run in a fresh project, then an unchanged re-run, whose
  steps should all come from the cache;
* 4 independent steps that each sleep 1 s, next to the same steps sleeping 0 s:
  run in parallel, the difference should be close to 1 s, not 4 s.

Prints each round's figures, then the median of each over the rounds and their
ratios with the targets. It is a report: nothing fails when a target is missed.
Kernels started by papermill warn on stderr; ``2>/dev/null`` hides them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbformat.v4 import new_code_cell, new_notebook

import stackmagic
import stackmagic.orchestrators.local  # noqa: F401 - else the first timed run would import it
from stackmagic import pipelines
from stackmagic.registry import Registry

STEPS = 10
WAITING_STEPS = 4
SETUP = "import math"
PARAMETERS = "x = 1"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(
    path: Path, *cells: str, setup: str | None = None, parameters: str | None = None
) -> Path:
    """A python3 notebook: the setup cell, the cell tagged ``parameters``, then ``cells``."""
    notebook_cells = []
    if setup is not None:
        notebook_cells.append(new_code_cell(setup))
    if parameters is not None:
        notebook_cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    notebook_cells.extend(new_code_cell(source) for source in cells)
    nbformat.write(new_notebook(cells=notebook_cells, metadata={"kernelspec": KERNELSPEC}), path)
    return path


def chain_notebook(folder: Path) -> Path:
    """Steps s0..s9, each reading the output of the one before (s0 reads the parameter)."""
    steps = [f"%%step s{i}\ny{i} = {f'y{i - 1}' if i else 'x'} + {i}" for i in range(STEPS)]
    return write_notebook(folder / "chain.ipynb", *steps, setup=SETUP, parameters=PARAMETERS)


def step_notebooks(folder: Path) -> list[Path]:
    """The chain's work as separate notebooks, one trivial cell each, for papermill and ploomber."""
    folder.mkdir()
    return [
        write_notebook(folder / f"s{i}.ipynb", f"y = x + {i}", setup=SETUP, parameters=PARAMETERS)
        for i in range(STEPS)
    ]


def waits_notebook(folder: Path, sleep: float) -> Path:
    """Independent steps that each sleep ``sleep`` seconds."""
    steps = [
        f"%%step w{i}\nimport time\ntime.sleep({sleep})\na{i} = {i}" for i in range(WAITING_STEPS)
    ]
    return write_notebook(folder / f"waits_{sleep:g}s.ipynb", *steps)


def new_project(folder: Path) -> Path:
    """``stackmagic init`` in a new folder: its own registry and local stores."""
    folder.mkdir()
    Registry.init(folder)
    return folder


@contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def time_pipeline(notebook: Path, *, no_cache: bool, expect: str) -> float | None:
    """Seconds for one ``stackmagic.run`` in the notebook's project; None if it failed.

    Prints the error of a failed run, and a warning when a step's status is not ``expect``.
    """
    with working_directory(notebook.parent):
        start = time.perf_counter()
        try:
            run = pipelines.run(notebook, no_cache=no_cache)
        except Exception as error:  # a report: say what went wrong and go on measuring
            print(f"  ERROR: stackmagic.run({notebook.name}): {type(error).__name__}: {error}")
            return None
        elapsed = time.perf_counter() - start
    if run.status != "completed":
        print(f"  ERROR: stackmagic.run({notebook.name}) ended with status {run.status!r}")
        return None
    unexpected = {name: step.status for name, step in run.steps.items() if step.status != expect}
    if unexpected:
        print(f"  WARNING: {notebook.name}: expected every step {expect}, got {unexpected}")
    return elapsed


def time_papermill_loop(notebooks: list[Path], output: Path) -> float | None:
    """Seconds to execute the notebooks one after the other with papermill; None if one failed."""
    output.mkdir(exist_ok=True)
    start = time.perf_counter()
    try:
        for notebook in notebooks:
            papermill.execute_notebook(notebook, output / notebook.name, progress_bar=False)
    except Exception as error:
        print(f"  ERROR: papermill loop raised {type(error).__name__}: {error}")
        return None
    return time.perf_counter() - start


def ploomber_dag(notebooks: list[Path], output: Path) -> Any:
    """The notebooks as a chain of ploomber ``NotebookRunner`` tasks on the ``Serial`` executor."""
    from ploomber import DAG
    from ploomber.executors import Serial
    from ploomber.products import File
    from ploomber.tasks import NotebookRunner

    output.mkdir()
    dag = DAG(executor=Serial())
    previous = None
    for i, notebook in enumerate(notebooks):
        task = NotebookRunner(
            notebook,
            File(output / notebook.name),
            dag=dag,
            name=f"s{i}",
            executor_params={"progress_bar": False},
        )
        if previous is not None:
            previous >> task
        previous = task
    return dag


def time_ploomber(dag: Any) -> float | None:
    """Seconds for ``dag.build(force=True)``; None if the build failed."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # its linting of the notebooks ('math' imported but unused)
            warnings.simplefilter("ignore")
            dag.build(force=True, show_progress=False)
    except Exception as error:
        print(f"  ERROR: ploomber dag.build raised {type(error).__name__}: {error}")
        return None
    return time.perf_counter() - start


def median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "failed"


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours is not None and theirs else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is their median")
    repeat = parser.parse_args().repeat

    with (
        tempfile.TemporaryDirectory(prefix="stackmagic-benchmark-") as scratch,
        working_directory(Path(scratch)),  # papermill's kernels and ploomber work in there too
    ):
        root = Path(scratch)
        os.environ["STACKMAGIC_HOME"] = str(root / "home")
        os.environ["PLOOMBER_HOME_DIR"] = str(root / "ploomber-home")
        os.environ["PLOOMBER_STATS_ENABLED"] = "false"
        os.environ["PLOOMBER_VERSION_CHECK_DISABLED"] = "true"
        try:
            import ploomber  # after the variables above: it reads them when imported
        except ImportError:
            ploomber = None

        chain = chain_notebook(new_project(root / "chain"))
        waits = new_project(root / "waits")
        waiting, idle = waits_notebook(waits, 1.0), waits_notebook(waits, 0.0)
        notebooks = step_notebooks(root / "notebooks")
        dag = ploomber_dag(notebooks, root / "ploomber") if ploomber else None

        print(
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, stackmagic "
            f"{stackmagic.__version__}, papermill {papermill.__version__}, ploomber "
            f"{ploomber.__version__ if ploomber else 'not installed'}; rounds: {repeat}"
        )
        names = ("chain", "papermill", "ploomber", "first", "cached", "waiting", "idle")
        samples: dict[str, list[float]] = {name: [] for name in names}
        for number in range(1, repeat + 1):
            measured = {
                "chain": time_pipeline(chain, no_cache=True, expect="completed"),
                "papermill": time_papermill_loop(notebooks, root / "papermill"),
                "ploomber": time_ploomber(dag) if dag is not None else None,
            }
            fresh = chain_notebook(new_project(root / f"cache-{number}"))
            measured["first"] = time_pipeline(fresh, no_cache=False, expect="completed")
            measured["cached"] = time_pipeline(fresh, no_cache=False, expect="cached")
            measured["waiting"] = time_pipeline(waiting, no_cache=True, expect="completed")
            measured["idle"] = time_pipeline(idle, no_cache=True, expect="completed")
            for name, value in measured.items():
                if value is not None:
                    samples[name].append(value)
            print(
                f"round {number}/{repeat}: chain {seconds(measured['chain'])}, "
                f"papermill loop {seconds(measured['papermill'])}, "
                f"ploomber {seconds(measured['ploomber']) if dag is not None else 'skipped'}, "
                f"first run {seconds(measured['first'])}, re-run {seconds(measured['cached'])}, "
                f"{WAITING_STEPS} x sleep(1) {seconds(measured['waiting'])}, "
                f"{WAITING_STEPS} x sleep(0) {seconds(measured['idle'])}"
            )

    m = {name: median(values) for name, values in samples.items()}
    chain_line = f"{STEPS}-step chain, every step executed: stackmagic {seconds(m['chain'])}"
    print(f"\nMedians over {repeat} round(s):")
    print(
        f"{chain_line}, papermill loop over {STEPS} notebooks {seconds(m['papermill'])}, "
        f"ratio {ratio(m['chain'], m['papermill'])} (target <= 0.5x)"
    )
    if dag is not None:
        print(
            f"{chain_line}, ploomber DAG of {STEPS} notebooks on Serial {seconds(m['ploomber'])}, "
            f"ratio {ratio(m['chain'], m['ploomber'])}"
        )
    else:
        print("ploomber: skipped, it is not installed (pip install ploomber to include it)")
    print(
        f"cached re-run of the {STEPS}-step chain: first run {seconds(m['first'])}, "
        f"unchanged re-run {seconds(m['cached'])}, ratio {ratio(m['cached'], m['first'])} "
        "(target <= 0.1x)"
    )
    sleep_1, sleep_0 = m["waiting"], m["idle"]
    difference = "n/a"
    if sleep_1 is not None and sleep_0 is not None:
        difference = f"{sleep_1 - sleep_0:+.2f} s"
    print(
        f"parallel waits, {WAITING_STEPS} independent steps: each sleeping 1 s "
        f"{seconds(sleep_1)}, sleeping 0 s {seconds(sleep_0)}, difference {difference} "
        "(target <= +1.60 s)"
    )


if __name__ == "__main__":
    main()
