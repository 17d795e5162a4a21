"""``python -m stackmagic.runtime``: a bundle, or one step of a recorded run, on this machine.

Remote orchestrators start this where steps run (a Kubeflow pod, a cloud VM).
It needs no notebook: steps run in the bundle's own copy of the files beside
the notebook. The stack is the active one of the registry found from the
working directory, or ``--stack``.

    python -m stackmagic.runtime run BUNDLE [-p NAME VALUE]... [--no-cache] [--only STEP] [--from STEP]
    python -m stackmagic.runtime step RUN_ID STEP
    python -m stackmagic.runtime vm LAUNCH
    python -m stackmagic.runtime job DESCRIPTION
    python -m stackmagic.runtime cluster LAUNCH
    python -m stackmagic.runtime task DESCRIPTION --step STEP --run JSON --run-key JSON --parameters JSON

``step`` runs a step that has not completed (a retried pod, a step the
orchestrator hands out); a completed step's outputs stay as they were.
``vm`` is what a cloud VM's startup script runs (see ``vm.py``); ``job`` what a
step operator's job runs (see ``job.py``); ``task`` what an Airflow task runs (see
``task_word.py``); ``cluster`` what the kubernetes orchestrator's pod runs (see
``cluster.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..argparsing import Parser
from ..cli import main as report
from ..errors import RunFailed, StackmagicError
from ..exiting import leave_memory_to_exit
from ..grammar import parameter_option
from ..output import Message, Output
from ..registry import Registry
from ..scratch import ScratchFolder
from ..stores.models import StepStatus
from . import recorded_context
from .task import run_on_own_kernel

PROG = "python -m stackmagic.runtime"


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    whole = actions.add_parser(
        "run",
        help="run every step of a bundle here and record the run",
        prog=f"{PROG} run",
        command="run",
    )
    whole.add_argument(
        "bundle",
        metavar="BUNDLE",
        help="a folder or zip from `stackmagic pipeline export`, or a bundle's URI "
        "in the artifact store",
    )
    parameter_option(whole, "override a parameter")
    whole.add_argument("--no-cache", action="store_true", help="reuse no cached result")
    whole.add_argument("--only", metavar="STEP", help="run this step alone")
    whole.add_argument(
        "--from", dest="from_step", metavar="STEP", help="run this step and those after it"
    )

    one = actions.add_parser(
        "step", help="run one step of a recorded run here", prog=f"{PROG} step", command="step"
    )
    one.add_argument("run_id", metavar="RUN_ID")
    one.add_argument("step", metavar="STEP")
    for action in (whole, one):
        action.add_argument("--stack", metavar="NAME", help="default: the active stack")

    def described(action: str, summary: str, word: str, what: str) -> argparse.ArgumentParser:
        """An action whose one argument is the description its launcher wrote (a CommandWord)."""
        made = actions.add_parser(action, help=summary, prog=f"{PROG} {action}", command=action)
        made.add_argument(word, metavar=word.upper(), help=what)
        return made

    described(
        "vm",
        "carry on a recorded run on this cloud VM, then delete it",
        "launch",
        "the launch description the VM was started with",
    )
    described(
        "job",
        "run one step of a recorded run as a step operator's job",
        "description",
        "the job description it was submitted with",
    )
    task = described(
        "task",
        "run one step of a run as a task of a DAG file (Airflow)",
        "description",
        "the DAG file's task description",
    )
    task.add_argument("--step", required=True, metavar="STEP")
    for flag, what in (
        ("--run", 'the run id as a JSON string, or "" for one derived from --run-key'),
        ("--run-key", "the orchestrator's name of the run, a JSON list"),
        ("--parameters", "the run's parameter values, a JSON object"),
    ):
        task.add_argument(flag, required=True, metavar="JSON", help=what)
    described(
        "cluster",
        "carry on a recorded run from this orchestrator pod, a pod per step",
        "launch",
        "the launch description the pod was started with",
    )
    return parser


def dispatch(argv: Sequence[str]) -> tuple[Output, bool]:
    args = build_parser().parse_args(argv)
    actions = {
        "run": run_whole,
        "step": run_one,
        "vm": run_vm,
        "job": run_as_job,
        "task": run_as_task,
        "cluster": run_cluster,
    }
    return actions[args.action](args), False


def run_whole(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..parameters import check_parameters, parse_parameter
    from ..pipelines import fetch_bundle, run_bundle
    from ..progress import LogLines
    from ..run_view import run_fields

    with OpenStack.open(Registry.open(), args.stack) as opened, ScratchFolder("bundle") as scratch:
        bundle = fetch_bundle(opened.artifact_store, args.bundle, Path(scratch))
        overrides = check_parameters(
            bundle.parameter_names,
            {name: parse_parameter(value) for name, value in args.parameter},
            bundle.parameters,
        )
        finished = run_bundle(
            bundle,
            opened,
            workdir=bundle.sources,
            notebook=bundle.manifest["notebook"],
            overrides=overrides,
            no_cache=args.no_cache,
            only=args.only,
            from_step=args.from_step,
            progress=LogLines(),
        )
    return run_fields(finished.record)


def run_one(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..pipelines import fetch_bundle

    with OpenStack.open(Registry.open(), args.stack) as opened, ScratchFolder("bundle") as scratch:
        record = opened.metadata.run(args.run_id)
        bundle = fetch_bundle(opened.artifact_store, record.bundle_uri, Path(scratch))
        status = record.step(args.step).status
        if status in StepStatus.WITH_OUTPUTS:  # its outputs are history other runs may build on
            raise StackmagicError(
                f"step {args.step!r} of run {record.id} is {status} already; start a new run "
                f"for it (`stackmagic pipeline run NOTEBOOK --only {args.step}`)"
            )
        context = recorded_context(record, bundle, opened.artifact_store, opened.metadata)
        outcome = run_on_own_kernel(context, args.step)
    if outcome.error is not None:
        where = f"; executed notebook: {outcome.notebook_uri}" if outcome.notebook_uri else ""
        raise RunFailed(f"step {args.step!r} of run {record.id} failed: {outcome.error}{where}")
    return Message(
        f"step {args.step!r} of run {record.id}: {outcome.status} in {outcome.seconds:.1f} s",
        {"step": args.step, "status": outcome.status},
    )


def run_vm(args: argparse.Namespace) -> Output:
    from .vm import Launch, run_on_vm

    launch = Launch.decode(args.launch)
    error = run_on_vm(launch)
    if error is not None:
        raise RunFailed(f"run {launch.run_id} failed: {error}")
    return Message(f"run {launch.run_id}: completed", {"run": launch.run_id, "status": "completed"})


def run_cluster(args: argparse.Namespace) -> Output:
    from .cluster import ClusterLaunch, run_in_cluster

    launch = ClusterLaunch.decode(args.launch)
    error = run_in_cluster(launch)
    if error is not None:
        raise RunFailed(f"run failed: {error}")
    return Message("run completed", {"status": "completed"})


def run_as_job(args: argparse.Namespace) -> Output:
    from ..operators.base import OperatorJob
    from .job import run_job

    job = OperatorJob.decode(args.description)
    outcome = run_job(job)
    said = f"step {job.step!r} of run {job.run_id} (try {job.attempt})"
    if outcome.status == StepStatus.FAILED:
        raise RunFailed(f"{said} failed: {outcome.error}")
    return Message(
        f"{said}: {outcome.status} in {outcome.seconds:.1f} s",
        {"step": job.step, "status": outcome.status},
    )


def run_as_task(args: argparse.Namespace) -> Output:
    from .task_word import TaskWord, run_word

    run_id = run_word(
        TaskWord.decode(args.description),
        step=args.step,
        run=args.run,
        run_key=args.run_key,
        parameters=args.parameters,
    )
    return Message(f"step {args.step!r} of run {run_id}: done", {"step": args.step, "run": run_id})


if __name__ == "__main__":
    code = report(dispatch=dispatch, prog=PROG)
    leave_memory_to_exit()
    sys.exit(code)
