"""The command grammar: one parser for the ``stackmagic`` command and the magics.

``%stack set gcp`` in a notebook is ``stackmagic stack set gcp`` in a terminal:
both go through :func:`run`. Component options (``--path=gs://...``) depend
on the flavor, so ``register`` and ``update`` collect them after argparse has
taken the options it knows, and the flavor validates them.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, commands
from .argparsing import Parser
from .errors import RunFailed, UsageError
from .flavors import ComponentType
from .output import Output

Handler = Callable[[argparse.Namespace], Output]


@functools.cache
def build_parser() -> Parser:
    """Built once a process: parsing leaves it as it was, and building it costs ~15 ms
    (argparse's gettext lookups), which a server answering the sidebar every second feels."""
    parser = Parser(
        prog="stackmagic",
        description="MLOps stacks for notebooks: components, stacks, and pipelines.",
        epilog="In a notebook, the same words work as magics after `%load_ext stackmagic`: %stack set gcp",
    )
    parser.add_argument("--version", action="version", version=f"stackmagic {__version__}")
    commands_ = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )

    _command(commands_, "init", commands.init, "make .stackmagic/ in this folder")
    _stack_commands(commands_)
    for kind in ComponentType:
        _component_commands(commands_, kind)
    _pipeline_commands(commands_)
    _image_commands(commands_)
    _gc_command(commands_)
    return parser


def _command(
    group: Any, name: str, handler: Handler | None, help_: str, *, prefix: str = "", **kwargs: Any
) -> Parser:
    """A sub-command; those with a ``handler`` are the ones that do something."""
    words = f"{prefix} {name}".strip()
    parser: Parser = group.add_parser(
        name,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        prog=f"stackmagic {words}",
        command=words,
        **kwargs,
    )
    if handler is not None:
        parser.set_defaults(handler=handler, as_json=False)
    return parser


def _json_flag(parser: Parser) -> None:
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")


def _stack_commands(group: Any) -> None:
    stack = _command(group, "stack", None, "register, activate and inspect stacks")
    actions = stack.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)

    def members(parser: Parser, *, required: bool) -> None:
        parser.add_argument("-m", "--metadata-store", required=required, metavar="NAME")
        parser.add_argument("-a", "--artifact-store", required=required, metavar="NAME")
        parser.add_argument("-o", "--orchestrator", required=required, metavar="NAME")
        parser.add_argument("-s", "--step-operator", metavar="NAME")

    register = _command(
        actions, "register", commands.stack_register, "register a stack", prefix="stack"
    )
    register.add_argument("name", metavar="NAME")
    members(register, required=True)

    update = _command(
        actions, "update", commands.stack_update, "swap components of a stack", prefix="stack"
    )
    update.add_argument("name", metavar="NAME")
    members(update, required=False)
    update.add_argument("--no-step-operator", action="store_true", help="remove the step operator")

    set_ = _command(
        actions, "set", commands.stack_set, "make a stack the active one", prefix="stack"
    )
    set_.add_argument("name", metavar="NAME")

    get = _command(
        actions, "get", commands.stack_get, "print the active stack's name", prefix="stack"
    )
    _json_flag(get)
    _json_flag(_command(actions, "list", commands.stack_list, "list the stacks", prefix="stack"))

    describe = _command(
        actions,
        "describe",
        commands.stack_describe,
        "show a stack and its components",
        prefix="stack",
    )
    describe.add_argument("name", metavar="NAME", nargs="?", help="default: the active stack")
    _json_flag(describe)

    delete = _command(actions, "delete", commands.stack_delete, "delete a stack", prefix="stack")
    delete.add_argument("name", metavar="NAME")


def _component_commands(group: Any, kind: ComponentType) -> None:
    noun = kind.noun
    top = _command(group, kind.value, None, f"manage {noun}s")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    options_help = f"flavor options, --KEY=VALUE (see `stackmagic {kind.value} flavors`)"

    register = _command(
        actions,
        "register",
        commands.component_register,
        f"register a {noun}",
        prefix=kind.value,
        epilog=options_help,
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument("--type", "--flavor", dest="flavor", required=True, metavar="FLAVOR")

    _json_flag(
        _command(actions, "list", commands.component_list, f"list the {noun}s", prefix=kind.value)
    )

    describe = _command(
        actions,
        "describe",
        commands.component_describe,
        f"show a {noun}'s settings",
        prefix=kind.value,
    )
    describe.add_argument("name", metavar="NAME")
    _json_flag(describe)

    update = _command(
        actions,
        "update",
        commands.component_update,
        f"change a {noun}'s options",
        prefix=kind.value,
        epilog=options_help,
    )
    update.add_argument("name", metavar="NAME")

    delete = _command(
        actions, "delete", commands.component_delete, f"delete a {noun}", prefix=kind.value
    )
    delete.add_argument("name", metavar="NAME")

    flavors = _command(
        actions,
        "flavors",
        commands.component_flavors,
        f"list the {noun} flavors and their options",
        prefix=kind.value,
    )
    _json_flag(flavors)
    top.set_defaults(kind=kind)


def _pipeline_commands(group: Any) -> None:
    top = _command(group, "pipeline", None, "run notebooks as pipelines and inspect their runs")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    notebook_help = "the .ipynb file; in a notebook, default: this notebook (saved)"

    run = _command(
        actions,
        "run",
        commands.pipeline_run,
        "run a notebook as a pipeline on a stack",
        prefix="pipeline",
    )
    run.add_argument("notebook", metavar="NOTEBOOK", nargs="?", help=notebook_help)
    _parameter_option(run, "override a parameter (a Python literal, else text)")
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
        help="how to show progress (default: a bar on a terminal, lines in a log)",
    )
    _json_flag(run)

    show = _command(
        actions,
        "show",
        commands.pipeline_show,
        "show a notebook's steps, their inputs and outputs, and the DAG",
        prefix="pipeline",
    )
    show.add_argument("notebook", metavar="NOTEBOOK", nargs="?", help=notebook_help)
    show.add_argument(
        "--cache",
        action="store_true",
        help="which steps a run would take from the cache now, and why the others "
        "would run (runs and records nothing)",
    )
    _parameter_option(show, "with --cache: a parameter the run would override")
    show.add_argument(
        "--stack",
        metavar="NAME",
        help="with --cache: the stack whose cache to read (default: the active one)",
    )
    _json_flag(show)

    export = _command(
        actions,
        "export",
        commands.pipeline_export,
        "write a notebook's pipeline out, for inspection or another orchestrator",
        prefix="pipeline",
    )
    export.add_argument("notebook", metavar="NOTEBOOK", nargs="?", help=notebook_help)
    export.add_argument(
        "--to",
        choices=["bundle", "kubeflow"],
        required=True,
        help="bundle: the step notebooks, the sources and the manifest, in a folder; "
        "kubeflow: a KFP v2 pipeline (YAML) for the stack's kubeflow orchestrator",
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        required=True,
        help="a new folder (bundle) or a YAML file (kubeflow)",
    )
    export.add_argument(
        "--stack",
        metavar="NAME",
        help="the stack whose stores the pipeline uses (default: the active one)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="kubeflow: replace an existing file (a bundle needs a new folder)",
    )
    _json_flag(export)

    runs = _command(actions, "runs", commands.pipeline_runs, "list recent runs", prefix="pipeline")
    runs.add_argument("--pipeline", metavar="NAME", help="only the runs of this pipeline")
    runs.add_argument(
        "--limit", type=_run_count, default=20, metavar="N", help="at most N runs (default 20)"
    )
    runs.add_argument("--stack", metavar="NAME", help="the stack whose metadata store to read")
    _json_flag(runs)

    describe = _command(
        actions,
        "describe",
        commands.pipeline_describe,
        "a run's steps, parameters, outputs and metrics",
        prefix="pipeline",
    )
    describe.add_argument(
        "run_id", metavar="RUN_ID", help="a run id, a unique beginning of one, or latest"
    )
    describe.add_argument("--stack", metavar="NAME", help="the stack whose metadata store to read")
    _json_flag(describe)

    logs = _command(
        actions,
        "logs",
        commands.pipeline_logs,
        "the log a run left where it ran (a cloud VM, kfp.local)",
        prefix="pipeline",
    )
    logs.add_argument(
        "run_id", metavar="RUN_ID", help="a run id, a unique beginning of one, or latest"
    )
    logs.add_argument("--stack", metavar="NAME", help="the stack whose stores to read")
    _json_flag(logs)

    load = _command(
        actions,
        "load",
        commands.pipeline_load,
        "load a past run's outputs (in a notebook: into the kernel)",
        prefix="pipeline",
    )
    load.add_argument(
        "run_id", metavar="RUN_ID", help="a run id, a unique beginning of one, or latest"
    )
    load.add_argument("what", metavar="STEP[.OUTPUT]", help="a step's outputs, or one of them")
    load.add_argument("--stack", metavar="NAME", help="the stack whose stores to read")
    _json_flag(load)


def _image_commands(group: Any) -> None:
    top = _command(group, "image", None, "container images for steps that run elsewhere")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    dockerfile = _command(
        actions,
        "dockerfile",
        commands.image_dockerfile,
        "write a Dockerfile for a step image: stackmagic and the notebook's imports, pinned",
        prefix="image",
    )
    dockerfile.add_argument(
        "notebook",
        metavar="NOTEBOOK",
        nargs="?",
        help="the .ipynb file; in a notebook, default: this notebook (saved)",
    )
    dockerfile.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        default="Dockerfile",
        help="where to write it (default: Dockerfile; - prints it)",
    )
    dockerfile.add_argument(
        "--base",
        metavar="IMAGE",
        default=None,
        help="base image (default: python:X.Y-slim of this Python)",
    )
    dockerfile.add_argument(
        "--stack",
        metavar="NAME",
        help="the stack whose stores the steps use (default: the active one)",
    )
    dockerfile.add_argument("--force", action="store_true", help="replace an existing file")


def _gc_command(group: Any) -> None:
    gc = _command(
        group,
        "gc",
        commands.garbage_collect,
        "remove what stopped runs left behind and, if asked, old runs' artifacts",
    )
    gc.add_argument(
        "--older-than",
        type=commands.parse_cutoff,
        metavar="AGE|DATE",
        help="also collect the runs started before then: 30d, 12h, 2w ago, or a date (2026-01-31)",
    )
    gc.add_argument(
        "--keep-last",
        type=commands.parse_keep_last,
        metavar="N",
        help="also collect each pipeline's runs but its newest N (with --older-than: "
        "only those older too)",
    )
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be removed and how much it frees; delete nothing",
    )
    gc.add_argument(
        "--stack", metavar="NAME", help="the stack whose stores to clean (default: the active one)"
    )
    _json_flag(gc)


def _parameter_option(parser: Parser, help_: str) -> None:
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=help_,
    )


#: The most runs a listing shows: more than any screen, and within every database's integers.
MOST_RUNS = 10_000


def _run_count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MOST_RUNS:
        raise argparse.ArgumentTypeError(
            f"expects a whole number from 1 to {MOST_RUNS}, not {text!r}"
        )
    return int(text)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    words = list(argv)
    options: dict[str, str | None] | None = None
    if len(words) >= 2 and words[0] in _COMPONENT_COMMANDS and words[1] in _FLAVOR_OPTION_ACTIONS:
        own, options = _split_flavor_options(words[2:], f"{words[0]} {words[1]}")
        words = [*words[:2], *own]
    args = build_parser().parse_args(words)
    args.command_words = f"{args.command} {getattr(args, 'action', '')}".strip()
    if options is not None:
        args.options = options
    return args


def run(argv: Sequence[str]) -> tuple[Output, bool]:
    """Parse and carry out one command; returns its output and whether JSON was asked for."""
    args = parse(argv)
    try:
        return args.handler(args), args.as_json
    except RunFailed as failure:
        failure.as_json = args.as_json  # the failed run is shown the way the command asked
        raise


_COMPONENT_COMMANDS = frozenset(kind.value for kind in ComponentType)
#: Actions that take flavor options, and the options argparse itself knows there.
_FLAVOR_OPTION_ACTIONS = {"register": {"--type", "--flavor"}, "update": set()}


def _split_flavor_options(
    tokens: list[str], command: str
) -> tuple[list[str], dict[str, str | None]]:
    """Take ``--key=value`` / ``--key value`` flavor options out before argparse sees the rest.

    Doing it first means an option's value can never be mistaken for NAME (which
    could print a password as a component name). A bare ``--flag`` maps to None:
    only the flavor knows whether that makes sense (a boolean is then true).
    """
    own_options = _FLAVOR_OPTION_ACTIONS[command.split()[1]]
    own: list[str] = []
    options: dict[str, str | None] = {}
    have_name = False
    position = 0
    while position < len(tokens):
        token = tokens[position]
        following = tokens[position + 1] if position + 1 < len(tokens) else None
        position += 1
        if token in ("-h", "--help"):
            own.append(token)
            continue
        if not token.startswith("-"):
            if have_name:  # never echoed: it may be the tail of a secret with a space in it
                raise UsageError(
                    "an extra word after the options; quote a value that contains spaces "
                    "(--key='a b')",
                    command,
                )
            own.append(token)
            have_name = True
            continue
        if not token.startswith("--"):
            raise UsageError(
                f"unknown option {token}: flavor options look like --key=value", command
            )
        key, has_value, given = token[2:].partition("=")
        if not key:
            raise UsageError("an option name is missing before '=': write --key=value", command)
        if "--" + key in own_options:
            own.append(token)
            if not has_value and following is not None:
                own.append(following)
                position += 1
            continue
        if key in ("type", "flavor"):
            raise UsageError(
                "the flavor of a component cannot change: delete it and register it again", command
            )
        value: str | None = given if has_value else None
        if not has_value and following is not None and not following.startswith("--"):
            value = following
            position += 1
        normalised = key.replace("_", "-")
        if normalised in options:
            raise UsageError(f"--{normalised} is given twice", command)
        options[normalised] = value
    return own, options
