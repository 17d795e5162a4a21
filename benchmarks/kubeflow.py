"""What the kubeflow orchestrator costs: compiling a pipeline, and running one with kfp.local.

Everything happens in a temporary folder, with ``STACKMAGIC_HOME`` pointed
inside it:

    python benchmarks/kubeflow.py [--repeat 3]

Each round measures:

* compiling a 50-step chain notebook for Kubeflow (the notebook parsed, the
  bundle exported and stored, the KFP pipeline built and written as YAML),
  next to the kfp SDK compiling a hand-written pipeline of 50 trivial
  lightweight components in a chain, the baseline of what any KFP user pays;
* a 10-step chain of trivial steps run with ``--mode=local`` (kfp.local, each
  task a process that fetches the bundle and opens the stores), next to the
  same notebook on the local orchestrator (kernels started ahead, in parallel).

Prints each round's figures, then medians and ratios. A report: nothing fails.
(No ``from __future__ import annotations``: the kfp SDK reads the baseline
component's annotations as types.)
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kfp
from kfp import compiler, dsl
from local_pipeline import new_project, ratio, seconds, working_directory, write_notebook

import stackmagic
from stackmagic.cli import main as stackmagic_cli

COMPILED_STEPS = 50
RUN_STEPS = 10


def chain(folder: Path, steps: int) -> Path:
    cells = [f"%%step s{i}\ny{i} = {f'y{i - 1}' if i else 'x'} + {i}" for i in range(steps)]
    return write_notebook(
        folder / f"chain{steps}.ipynb", *cells, setup="import math", parameters="x = 1"
    )


def cli(*words: str) -> None:
    if stackmagic_cli(list(words)) != 0:
        raise SystemExit(f"stackmagic {' '.join(words)} failed")


def time_compile(notebook: Path, output: Path) -> float:
    started = time.perf_counter()
    cli(
        "pipeline", "export", str(notebook), "--to", "kubeflow", "-o", str(output), "--stack", "kfl"
    )
    return time.perf_counter() - started


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def trivial(x: int) -> int:
    return x + 1


def time_plain_kfp(output: Path) -> float:
    """The kfp SDK alone: 50 lightweight components in a chain, compiled to YAML."""
    started = time.perf_counter()

    @dsl.pipeline(name="plain-chain")
    def plain(x: int = 1) -> None:
        value = x
        for _ in range(COMPILED_STEPS):
            value = trivial(x=value).output

    compiler.Compiler().compile(plain, str(output))
    return time.perf_counter() - started


def time_run(notebook: Path, stack: str) -> float | None:
    started = time.perf_counter()
    try:
        run = stackmagic.run(notebook, stack=stack, no_cache=True)
    except Exception as error:  # a report, not a test: say what failed and go on
        print(f"  ERROR: run on {stack}: {type(error).__name__}: {error}")
        return None
    if run.status != "completed":
        print(f"  ERROR: run on {stack} ended {run.status}")
        return None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is their median")
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="stackmagic-benchmark-") as scratch:
        root = Path(scratch)
        os.environ["STACKMAGIC_HOME"] = str(root / "home")
        project = new_project(root / "project")
        with working_directory(project):
            cli("orchestrator", "register", "kfl", "--type=kubeflow", "--mode=local")
            cli("stack", "register", "kfl", "-m", "default", "-a", "default", "-o", "kfl")
            big, small = chain(project, COMPILED_STEPS), chain(project, RUN_STEPS)
            print(
                f"Python {platform.python_version()}, {os.cpu_count()} CPUs, stackmagic "
                f"{stackmagic.__version__}, kfp {kfp.__version__}; rounds: {repeat}"
            )
            samples: dict[str, list[float]] = {k: [] for k in ("compile", "plain", "kfp", "local")}
            for number in range(1, repeat + 1):
                measured = {
                    "compile": time_compile(big, root / f"chain-{number}.yaml"),
                    "plain": time_plain_kfp(root / f"plain-{number}.yaml"),
                    "kfp": time_run(small, "kfl"),
                    "local": time_run(small, "default"),
                }
                print(
                    f"round {number}: "
                    + ", ".join(f"{k} {seconds(v)}" for k, v in measured.items())
                )
                for name, value in measured.items():
                    if value is not None:
                        samples[name].append(value)
    middle = {k: statistics.median(v) if v else None for k, v in samples.items()}
    print(
        f"\ncompile {COMPILED_STEPS} steps: {seconds(middle['compile'])} "
        f"(kfp SDK alone, {COMPILED_STEPS} trivial tasks: {seconds(middle['plain'])}; "
        f"ratio {ratio(middle['compile'], middle['plain'])})"
    )
    print(
        f"run {RUN_STEPS} steps with kfp.local: {seconds(middle['kfp'])} "
        f"(local orchestrator: {seconds(middle['local'])}; ratio "
        f"{ratio(middle['kfp'], middle['local'])})"
    )


if __name__ == "__main__":
    sys.exit(main())
