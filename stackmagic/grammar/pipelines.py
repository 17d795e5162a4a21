"""``pipeline``: show, run, export, runs, compare, describe, logs, load, cancel, schedule."""

from __future__ import annotations

import argparse
from typing import Any

from .. import commands
from ..argparsing import Parser
from . import Handler, command, json_flag, parameter_option
from .schedules import schedule_actions

METADATA_STACK = "the stack whose metadata store to read"
STORES_STACK = "the stack whose stores to read"


def pipeline_commands(group: Any) -> None:
    top = command(group, "pipeline", None, "run notebooks as pipelines and inspect their runs")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)

    run = notebook_action(
        actions, "run", commands.pipeline_run, "run a notebook as a pipeline on a stack"
    )
    parameter_option(run, "override a parameter (a Python literal, else text)")
    run.add_argument("--stack", metavar="NAME", help="run on this stack (default: the active one)")
    run.add_argument(
        "--no-cache", action="store_true", help="run every step, reuse no cached result"
    )
    run.add_argument(
        "--only", metavar="STEP", help="run this step alone, from cached upstream outputs"
    )
    run.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="run this step and those after it, from cached upstream outputs",
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="on a remote orchestrator (Kubeflow), follow the run to its end; local runs always do",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be started (a cloud VM's launch request and startup "
        "script); start and record nothing",
    )
    run.add_argument(
        "--progress",
        choices=["auto", "bar", "lines", "none"],
        default="auto",
        help="how to show progress: bar, the steps running now and their time, live (the "
        "default on a terminal); lines, a line per event (the default elsewhere); none",
    )
    json_flag(run)

    show = notebook_action(
        actions,
        "show",
        commands.pipeline_show,
        "show a notebook's steps, their inputs and outputs, and the DAG",
    )
    show.add_argument(
        "--cache",
        action="store_true",
        help="which steps a run would take from the cache now, and why the others "
        "would run (runs and records nothing)",
    )
    parameter_option(show, "with --cache: a parameter the run would override")
    show.add_argument(
        "--stack",
        metavar="NAME",
        help="with --cache: the stack whose cache to read (default: the active one)",
    )
    json_flag(show)

    export = notebook_action(
        actions,
        "export",
        commands.pipeline_export,
        "write a notebook's pipeline out, for inspection or another orchestrator",
    )
    export.add_argument(
        "--to",
        choices=["bundle", "kubeflow", "airflow"],
        required=True,
        help="bundle: the step notebooks, the sources and the manifest, in a folder; "
        "kubeflow: a KFP v2 pipeline (YAML) for the stack's kubeflow orchestrator; "
        "airflow: an Airflow DAG file (Python)",
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        required=True,
        help="a new folder (bundle), a YAML file (kubeflow) or a .py file (airflow)",
    )
    export.add_argument(
        "--stack",
        metavar="NAME",
        help="the stack whose stores the pipeline uses (default: the active one)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="kubeflow, airflow: replace an existing file (a bundle needs a new folder)",
    )
    export.add_argument(
        "--operator",
        choices=["bash", "kubernetes", "docker"],
        help="airflow: what each task is (default: the stack's airflow orchestrator's "
        "--operator, else bash)",
    )
    json_flag(export)

    runs = command(actions, "runs", commands.pipeline_runs, "list recent runs", prefix="pipeline")
    runs.add_argument("--pipeline", metavar="NAME", help="only the runs of this pipeline")
    runs.add_argument(
        "--status", choices=commands.RUN_STATUSES, help="only the runs with this status"
    )
    runs.add_argument(
        "--limit",
        type=run_count,
        default=20,
        metavar="N|all",
        help="at most N runs (default 20), or all of them",
    )
    runs.add_argument("--stack", metavar="NAME", help=METADATA_STACK)
    json_flag(runs)

    describe = run_action(
        actions,
        "describe",
        commands.pipeline_describe,
        "a run's steps, parameters, outputs and metrics",
        METADATA_STACK,
    )
    json_flag(describe)

    compare = command(
        actions,
        "compare",
        commands.pipeline_compare,
        "runs side by side: the parameters that differ, and their metrics",
        prefix="pipeline",
    )
    compare.add_argument(
        "run_ids",
        metavar="RUN",
        nargs="+",
        help="two runs or more: run ids, unique beginnings of them, or latest",
    )
    compare.add_argument(
        "--metric", metavar="NAME", help="in a notebook, the metric to chart (default: the first)"
    )
    compare.add_argument("--stack", metavar="NAME", help=METADATA_STACK)
    json_flag(compare)

    cancel = run_action(
        actions,
        "cancel",
        commands.pipelines.pipeline_cancel,
        "stop a running run: its steps, its Kubeflow run or its VM",
        METADATA_STACK,
    )
    cancel.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the run is asked to stop, not once it is recorded cancelled",
    )
    json_flag(cancel)

    logs = run_action(
        actions,
        "logs",
        commands.pipeline_logs,
        "the log a run left where it ran (a cloud VM, kfp.local)",
        STORES_STACK,
    )
    json_flag(logs)

    load = run_action(
        actions,
        "load",
        commands.pipeline_load,
        "load a past run's outputs (in a notebook: into the kernel)",
        STORES_STACK,
    )
    load.add_argument("what", metavar="STEP[.OUTPUT]", help="a step's outputs, or one of them")
    json_flag(load)

    schedule_actions(actions, notebook_action, METADATA_STACK)


def notebook_action(actions: Any, name: str, handler: Handler, help_: str) -> Parser:
    """An action on a notebook's pipeline: the notebook, this one by default in a notebook."""
    parser = command(actions, name, handler, help_, prefix="pipeline")
    parser.add_argument(
        "notebook",
        metavar="NOTEBOOK",
        nargs="?",
        help="the .ipynb file; in a notebook, default: this notebook (saved)",
    )
    return parser


def run_action(actions: Any, name: str, handler: Handler, help_: str, stack_help: str) -> Parser:
    """An action on one recorded run: which run, and the stack whose stores keep it."""
    parser = command(actions, name, handler, help_, prefix="pipeline")
    parser.add_argument(
        "run_id", metavar="RUN_ID", help="a run id, a unique beginning of one, or latest"
    )
    parser.add_argument("--stack", metavar="NAME", help=stack_help)
    return parser


#: The most runs a number asks for (more than any screen, within every database's
#: integers); ``all`` asks for every one.
MOST_RUNS = 10_000


def run_count(text: str) -> int | None:
    """N runs, or None for ``all``."""
    if text == "all":
        return None
    if not text.isdigit() or not 0 < int(text) <= MOST_RUNS:
        raise argparse.ArgumentTypeError(
            f"expects a whole number from 1 to {MOST_RUNS}, or all, not {text!r}"
        )
    return int(text)
