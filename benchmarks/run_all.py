"""A notebook as a pipeline next to Run All: whole processes, measured in the same run.

What a data scientist compares ``stackmagic pipeline run`` with is running the
notebook top to bottom. Each round times, as separate processes on the same
machine load, and samples the peak memory of each process tree (psutil, every
20 ms: the summed PSS, in which a page that forked processes share counts once):

* Run All: ``python -m papermill NOTEBOOK OUT`` (papermill running the whole notebook);
* ``stackmagic pipeline run NOTEBOOK --no-cache`` on the default local stack
  (a cold process, every step executing);
* ``stackmagic pipeline run NOTEBOOK`` again, unchanged, every step from the cache;

for two notebooks: a realistic one (numpy, pandas, scikit-learn and matplotlib
imported in the setup; load, clean in place, split, two models side by side,
evaluate with a plot, a file written and read) and a chain of 10 trivial steps.
Run All goes first in odd rounds and last in even ones. The steps' bodies take
the time papermill wrote into the ``%%step`` cells of Run All's executed
notebook (``papermill.duration``), so the overhead of a pipeline run per step is
(its wall time - the bodies' time) / steps, from the same round: the start of
the process and of the first kernel included. Within the run, the median step's
time as the run recorded it, next to the median body's, tells what each further
step costs. It prints the medians, their ratios with Run All and the targets. A report: nothing fails on
a slow machine.

    python benchmarks/run_all.py [--repeat 3] [--only realistic|chain] [--json FILE]

Everything happens in a temporary folder, with ``STACKMAGIC_HOME`` inside it;
each notebook has a project of its own, and Run All works in another folder so
that the files it writes do not change what the pipeline's cache sees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
from nbformat.v4 import new_code_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
BIN = Path(sys.executable).parent
SAMPLE_EVERY = 0.02  # seconds between two memory samples
MB = 1024 * 1024

# Each notebook: the setup cell, the parameters cell (tagged), then the steps.
REALISTIC = [
    "import pickle\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\n%load_ext stackmagic",
    "rows = 2000\ntrees = 20",
    "%%step load\nrng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'a': rng.normal(size=rows), 'b': rng.normal(size=rows).astype(str)})\n"
    "df['label'] = (df['a'] > 0).astype(int)",
    "%%step clean\ndf['b'] = df['b'].astype(float)\ndf.dropna(inplace=True)\nprint(df.shape)",
    "%%step split\nX_train, X_test, y_train, y_test = train_test_split(\n"
    "    df[['a', 'b']], df['label'], random_state=0)",
    "%%step linear\nlinear = LogisticRegression().fit(X_train, y_train)\n"
    "with open('linear.pkl', 'wb') as file:\n    pickle.dump(linear, file)",
    "%%step forest\nforest = RandomForestClassifier(n_estimators=trees, random_state=0)\n"
    "forest.fit(X_train, y_train)",
    "%%step evaluate\nwith open('linear.pkl', 'rb') as file:\n    saved = pickle.load(file)\n"
    "scores = {'linear': saved.score(X_test, y_test), 'forest': forest.score(X_test, y_test)}\n"
    "plt.bar(list(scores), list(scores.values()))\nplt.ylabel('accuracy')\nplt.show()",
]
CHAIN = [  # as in benchmarks/local_pipeline.py: each step reads the one before
    "import math\n%load_ext stackmagic",
    "x = 1",
    *(f"%%step s{i}\ny{i} = {f'y{i - 1}' if i else 'x'} + {i}" for i in range(10)),
]
NOTEBOOKS = {"realistic": REALISTIC, "chain": CHAIN}
TITLES = {"realistic": "realistic 6-step notebook", "chain": "10-step trivial chain"}
PIPELINE_TARGET = {"realistic": 1.3, "chain": 1.2}  # x Run All
OVERHEAD_TARGET = {"chain": 0.050}  # seconds per step
CACHED_TARGET, CACHED_RATIO_TARGET = 0.35, 0.15  # seconds, or x Run All


def write(path: Path, cells: list[str]) -> Path:
    """The notebook of ``cells``, its second cell tagged ``parameters``."""
    setup, parameters, *steps = cells
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell(setup),
                new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                *map(new_code_cell, steps),
            ],
            metadata={"kernelspec": KERNELSPEC},
        ),
        path,
    )
    return path


def tree_memory(root: psutil.Process) -> int:
    """The memory of a process and all its descendants: their summed PSS where the system
    tells it (a page forks share counts once, split between them), else their RSS."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += getattr(process.memory_full_info(), "pss", 0) or process.memory_info().rss
        except psutil.Error:  # ended meanwhile: counts 0
            pass
    return total


def timed(*command: str, cwd: Path) -> tuple[float, float, str]:
    """Wall seconds and peak memory (MB) of the command's process tree, and what it printed."""
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(process.pid)
        except psutil.Error:
            return
        while process.poll() is None:
            peak = max(peak, tree_memory(root))
            time.sleep(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return elapsed, peak / MB, out


def bodies_seconds(executed: Path) -> tuple[float, list[float]]:
    """The time papermill recorded for the ``%%step`` cells, the steps' bodies alone: in all,
    and each."""
    each = [
        cell.metadata["papermill"]["duration"]
        for cell in nbformat.read(executed, as_version=4).cells
        if cell.source.startswith("%%step")
    ]
    return sum(each), each


def pipeline(notebook: Path, *options: str, expect: str) -> tuple[float, float, float]:
    """Seconds and peak MB of ``stackmagic pipeline run``, and the median time its steps took
    as the run recorded them; warns if a step is not ``expect``."""
    command = (str(BIN / "stackmagic"), "pipeline", "run", notebook.name, "--progress", "none")
    seconds, peak, out = timed(*command, "--json", *options, cwd=notebook.parent)
    steps = json.loads(out)["steps"]
    other = {s["name"]: s["status"] for s in steps if s["status"] != expect}
    if other:
        print(f"  WARNING: {notebook.name}: expected every step {expect}, got {other}")
    return seconds, peak, statistics.median(s["seconds"] or 0.0 for s in steps)


def measure(name: str, notebook: Path, run_all_folder: Path, first: bool) -> dict[str, float]:
    """One round of one notebook: Run All (``first`` or last), a pipeline run, its cached re-run."""
    figures: dict[str, float] = {}

    def run_all() -> None:
        executed = run_all_folder / notebook.name
        command = (sys.executable, "-m", "papermill", "--no-progress-bar", str(notebook))
        seconds, peak, _ = timed(*command, str(executed), cwd=run_all_folder)
        figures.update({"run all": seconds, "run all MB": peak})
        figures["bodies"], figures["body times"] = bodies_seconds(executed)

    if first:
        run_all()
    figures["pipeline"], figures["pipeline MB"], figures["median step"] = pipeline(
        notebook, "--no-cache", expect="completed"
    )
    figures["cached"], figures["cached MB"], _ = pipeline(notebook, expect="cached")
    if not first:
        run_all()
    steps = sum(cell.startswith("%%step") for cell in NOTEBOOKS[name])
    figures["overhead per step"] = (figures["pipeline"] - figures["bodies"]) / steps
    figures["median body"] = statistics.median(figures.pop("body times"))
    return figures


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def summary(name: str, median: dict[str, float]) -> list[str]:
    """The medians of one notebook next to Run All's, with the targets."""
    base = median["run all"]
    ratio, cached = median["pipeline"] / base, median["cached"]
    overhead = median["overhead per step"]
    run_target = f"target <= {PIPELINE_TARGET[name]}x, {verdict(ratio, PIPELINE_TARGET[name])}"
    over_target = ""
    if name in OVERHEAD_TARGET:
        limit = OVERHEAD_TARGET[name]
        over_target = f" (target <= {limit * 1000:.0f} ms, {verdict(overhead, limit)})"
    cached_met = cached <= CACHED_TARGET or cached / base <= CACHED_RATIO_TARGET
    return [
        f"{TITLES[name]}:",
        f"  Run All {base:.2f} s, peak {median['run all MB']:.0f} MB; "
        f"the steps' bodies {median['bodies']:.2f} s of it",
        f"  pipeline run --no-cache {median['pipeline']:.2f} s ({ratio:.2f}x, {run_target}), "
        f"peak {median['pipeline MB']:.0f} MB ({median['pipeline MB'] / median['run all MB']:.2f}x)",
        f"  overhead per step {overhead * 1000:.0f} ms{over_target}: the run's time but the "
        "bodies', by step",
        f"  within the run, the median step took {median['median step'] * 1000:.0f} ms for a "
        f"body of {median['median body'] * 1000:.0f} ms",
        f"  cached re-run {cached:.2f} s ({cached / base:.2f}x, target <= {CACHED_TARGET} s "
        f"or <= {CACHED_RATIO_TARGET}x, {'met' if cached_met else 'MISSED'}), "
        f"peak {median['cached MB']:.0f} MB",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--only", choices=sorted(NOTEBOOKS), help="measure this notebook alone")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    names = [args.only] if args.only else list(NOTEBOOKS)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="stackmagic-bench-") as scratch:
        root = Path(scratch)
        os.environ["STACKMAGIC_HOME"] = str(root / "home")
        run_all_folder = root / "run-all"
        run_all_folder.mkdir()
        notebooks = {}
        for name in names:
            (root / name).mkdir()
            init = [str(BIN / "stackmagic"), "init"]
            subprocess.run(init, cwd=root / name, check=True, capture_output=True)
            notebooks[name] = write(root / name / f"{name}.ipynb", NOTEBOOKS[name])
        for number in range(1, args.repeat + 1):
            for name, notebook in notebooks.items():
                rounds[name].append(measure(name, notebook, run_all_folder, number % 2 == 1))
                said = ", ".join(
                    f"{key} {value:.0f}" if key.endswith("MB") else f"{key} {value:.2f} s"
                    for key, value in rounds[name][-1].items()
                )
                print(f"round {number}/{args.repeat}, {name}: {said}", flush=True)
    medians = {
        name: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        for name, rows in rounds.items()
    }
    print(
        f"\nMedians over {args.repeat} round(s), Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs:"
    )
    for name, median in medians.items():
        print("\n".join(summary(name, median)))
    if args.json:
        figures: dict[str, Any] = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "targets": {
                "pipeline x run all": PIPELINE_TARGET,
                "overhead per step": OVERHEAD_TARGET,
                "cached": CACHED_TARGET,
                "cached x run all": CACHED_RATIO_TARGET,
            },
            "rounds": rounds,
            "medians": medians,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
