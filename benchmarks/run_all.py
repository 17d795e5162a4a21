"""A notebook as a pipeline next to Run All: whole processes, measured in the same run.

What a data scientist compares ``stackmagic pipeline run`` with is running the
notebook top to bottom. Each round times, as separate processes one after the
other on the same machine load:

* Run All: ``python -m papermill NOTEBOOK OUT`` (papermill running the whole notebook);
* ``stackmagic pipeline run NOTEBOOK --no-cache`` on the default local stack;
* ``stackmagic pipeline run NOTEBOOK`` again, unchanged, every step from the cache;

for two notebooks: a realistic one (pandas and scikit-learn imported in the
setup; load, clean in place, split, two models side by side, evaluate, a file
written and read) and a chain of 10 trivial steps. It prints the medians and
their ratios with Run All. A report: nothing fails on a slow machine.

    python benchmarks/run_all.py [--repeat 3]

Everything happens in a temporary folder, with ``STACKMAGIC_HOME`` inside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
BIN = Path(sys.executable).parent

REALISTIC = [
    "import pickle\nimport numpy as np\nimport pandas as pd\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\n%load_ext stackmagic",
    "%%step load\nrng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'a': rng.normal(size=2000), 'b': rng.normal(size=2000).astype(str)})\n"
    "df['label'] = (df['a'] > 0).astype(int)",
    "%%step clean\ndf['b'] = df['b'].astype(float)\ndf.dropna(inplace=True)\nprint(df.shape)",
    "%%step split\nX_train, X_test, y_train, y_test = train_test_split(\n"
    "    df[['a', 'b']], df['label'], random_state=0)",
    "%%step linear\nlinear = LogisticRegression().fit(X_train, y_train)\n"
    "pickle.dump(linear, open('linear.pkl', 'wb'))",
    "%%step forest\nforest = RandomForestClassifier(n_estimators=20, random_state=0)\n"
    "forest.fit(X_train, y_train)",
    "%%step evaluate\nsaved = pickle.load(open('linear.pkl', 'rb'))\n"
    "print(saved.score(X_test, y_test), forest.score(X_test, y_test))",
]
CHAIN = [
    "import math\n%load_ext stackmagic",
    "%%step s0\nv0 = 1",
    *(f"%%step s{i}\nv{i} = v{i - 1} + 1" for i in range(1, 10)),
]


def write(path: Path, cells: list[str]) -> Path:
    nbformat.write(
        new_notebook(cells=[new_code_cell(c) for c in cells], metadata={"kernelspec": KERNELSPEC}),
        path,
    )
    return path


def seconds(*command: str, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def measure(folder: Path, notebook: Path) -> dict[str, float]:
    run = (str(BIN / "stackmagic"), "pipeline", "run", notebook.name, "--progress", "none")
    return {
        "run all": seconds(
            sys.executable,
            "-m",
            "papermill",
            "--no-progress-bar",
            notebook.name,
            str(folder / f"ran-{notebook.name}"),
            cwd=folder,
        ),
        "pipeline": seconds(*run, "--no-cache", cwd=folder),
        "cached": seconds(*run, cwd=folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    rounds = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="stackmagic-bench-") as scratch:
        root = Path(scratch)
        os.environ["STACKMAGIC_HOME"] = str(root / "home")
        subprocess.run([str(BIN / "stackmagic"), "init"], cwd=root, check=True, capture_output=True)
        notebooks = {
            "realistic 6-step notebook": write(root / "realistic.ipynb", REALISTIC),
            "10-step trivial chain": write(root / "chain.ipynb", CHAIN),
        }
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in notebooks}
        for number in range(1, rounds + 1):
            for name, notebook in notebooks.items():
                figures[name].append(measure(root, notebook))
                said = ", ".join(f"{k} {v:.2f} s" for k, v in figures[name][-1].items())
                print(f"round {number}/{rounds}, {name}: {said}", flush=True)
    print(
        f"\nMedians over {rounds} round(s), Python {sys.version.split()[0]}, {os.cpu_count()} CPUs:"
    )
    for name, rows in figures.items():
        median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        base = median["run all"]
        print(
            f"{name}: Run All {base:.2f} s; pipeline run {median['pipeline']:.2f} s "
            f"({median['pipeline'] / base:.2f}x); cached re-run {median['cached']:.2f} s "
            f"({median['cached'] / base:.2f}x)"
        )


if __name__ == "__main__":
    main()
