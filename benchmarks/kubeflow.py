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
  same notebook on the local orchestrator (kernels started ahead, in parallel);
* one task, a whole process: the command a Kubeflow pod runs (kfp's executor
  calling ``stackmagic_step``) for the chain's first step in a new run, and
  ``python -m stackmagic.runtime step RUN STEP`` running the failed step of a
  recorded run.

Prints each round's figures, then medians and ratios. A report: nothing fails.
(No ``from __future__ import annotations``: the kfp SDK reads the baseline
component's annotations as types.)
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kfp
from kfp import compiler, dsl
from local_pipeline import new_project, ratio, seconds, working_directory, write_notebook

import stackmagic
from stackmagic.cli import main as stackmagic_cli
from stackmagic.orchestrators import kfp_task
from stackmagic.pipelines import PipelineFailed

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


def kubeflow_task(run: Any, step: str, outputs: Path, kfp_run: str) -> list[str]:
    """The command a Kubeflow pod runs for ``step`` of ``run``'s pipeline, in KFP run ``kfp_run``.

    As in a run started from the KFP UI, the task records the run.
    """
    record = run.record
    inputs = {
        "step": step,
        "run": "",
        "kfp_run": kfp_run,
        "bundle": record.bundle_uri,
        "stores": {"stack": record.stack_name, **record.stack},
        "parameters": {},
        "options": {"no_cache": "true", "only": "", "from": ""},
    }
    executor_input = {
        "inputs": {"parameterValues": inputs},
        "outputs": {
            "artifacts": {
                "notebook": {
                    "artifacts": [
                        {
                            "name": "notebook",
                            "type": {"schemaTitle": "system.HTML"},
                            "uri": str(outputs / "notebook.html"),
                            "metadata": {},
                        }
                    ]
                }
            },
            "outputFile": str(outputs / "executor_output.json"),
        },
    }
    return [
        sys.executable,
        "-m",
        "kfp.dsl.executor_main",
        "--component_module_path",
        kfp_task.__file__,
        "--executor_input",
        json.dumps(executor_input),
        "--function_to_execute",
        "stackmagic_step",
    ]


def timed(command: list[str], **environment: str) -> float | None:
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **environment}
    )
    if done.returncode != 0:
        print(f"  ERROR: {command[2]} failed: {done.stderr.strip()[-300:]}")
        return None
    return time.perf_counter() - started


def time_step_command(notebook: Path) -> float | None:
    """``python -m stackmagic.runtime step`` on the step a run recorded as failed."""
    try:
        stackmagic.run(notebook, stack="default", no_cache=True)
    except PipelineFailed as failure:
        run_id = failure.run.id
    else:
        print("  ERROR: the run to retry did not fail")
        return None
    command = [sys.executable, "-m", "stackmagic.runtime", "step", run_id, "s0"]
    return timed(command, SERVICE_UP="1")


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
            flaky = write_notebook(
                project / "flaky.ipynb",
                "%%step s0\nassert os.environ.get('SERVICE_UP') == '1', 'the service is down'\nup = 1",
                setup="import os",
            )
            recorded = stackmagic.run(small, stack="kfl", no_cache=True)
            print(
                f"Python {platform.python_version()}, {os.cpu_count()} CPUs, stackmagic "
                f"{stackmagic.__version__}, kfp {kfp.__version__}; rounds: {repeat}"
            )
            names = ("compile", "plain", "kfp", "local", "task", "step")
            samples: dict[str, list[float]] = {k: [] for k in names}
            for number in range(1, repeat + 1):
                measured = {
                    "compile": time_compile(big, root / f"chain-{number}.yaml"),
                    "plain": time_plain_kfp(root / f"plain-{number}.yaml"),
                    "kfp": time_run(small, "kfl"),
                    "local": time_run(small, "default"),
                    "task": timed(
                        kubeflow_task(recorded, "s0", root / "task", f"kfp-task-{number}"),
                        _KFP_RUNTIME="true",  # as kfp's command sets it
                    ),
                    "step": time_step_command(flaky),
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
    print(
        f"one Kubeflow task: {seconds(middle['task'])}; `python -m stackmagic.runtime step`: "
        f"{seconds(middle['step'])}"
    )


if __name__ == "__main__":
    sys.exit(main())
