"""Mutation testing: break the modules whose mistakes cost most, one small change at a time.

A test suite that still passes with a comparison flipped, a decorator dropped or a
key left out of a tuple misses that mistake. For each target module this script
applies well-known mutation operators one at a time and runs the test files that
cover the module; a mutant the tests still pass on *survived*, and each survivor
is listed (file:line, change).

The work happens in a copy of the repository put first on ``PYTHONPATH``, so the
kernels and command-line processes the tests start import the mutant too, and the
working tree is never touched. (mutmut 3 puts its mutants on the import path of the
test process alone, and first runs the whole suite; this project's tests also run
its code in kernels and command-line processes.)

    python tools/mutation.py                      # every target module, every mutant
    python tools/mutation.py --sample 20 --seed 1 # the same 20 mutants per module each time
    python tools/mutation.py --module cache --list

Not part of CI: a full run takes hours; a sample of 20 per module, about 40 minutes on
two cores. A sample keeps its mutants while other lines of the module change.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PIPELINE_RUN = "tests/test_pipeline_run.py::test_"
#: Each module and the tests that cover it: few enough that one mutant takes seconds.
TARGETS: dict[str, tuple[str, ...]] = {
    "stackmagic/registry.py": (
        "tests/test_cli.py",
        "tests/test_validation.py",
        "tests/test_secrets.py",
    ),
    "stackmagic/secrets.py": ("tests/test_secrets.py", "tests/test_magics.py"),
    "stackmagic/flavors/base.py": (
        "tests/test_secrets.py",
        "tests/test_flavors.py",
        "tests/test_cli.py",
    ),
    "stackmagic/server/handlers.py": ("tests/test_server.py",),
    "stackmagic/runtime/cache.py": ("tests/test_cache_reasons.py",),
    "stackmagic/orchestrators/local.py": tuple(
        _PIPELINE_RUN + name
        for name in (
            "a_failing_step_names_the_cell_skips_dependants_and_exits_non_zero",
            "a_skipped_step_names_the_failed_steps_it_depends_on",
            "a_diamond_runs_its_branches_at_the_same_time",
            "unchanged_rerun_is_served_from_cache_and_a_change_reruns_from_there",
            "only_and_from_start_from_cached_upstream_outputs",
        )
    ),
}
_COPIED = ("stackmagic", "tests", "notebooks", "pyproject.toml", "README.md")
_NOT_COPIED = shutil.ignore_patterns(
    "node_modules", "__pycache__", ".ipynb_checkpoints", ".stackmagic", ".pytest_cache"
)
_COMPARISONS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
}
_SYMBOLS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Div: "/",
    ast.Mod: "%",
    ast.And: "and",
    ast.Or: "or",
}

#: One way to change a node: its line, what it does in words, and the change itself, which
#: edits the node in place or returns the node to put in its place.
Change = tuple[int, str, Callable[[ast.AST], "ast.AST | None"]]


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    #: the node's place in ``ast.walk`` order and which of its changes: found again in a fresh parse
    node: int
    which: int
    change: str
    #: what names the mutant across edits elsewhere in the file, for a stable sample
    identity: str


def _short(node: ast.AST, limit: int = 50) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _setting(name: str, value: object) -> Callable[[ast.AST], None]:
    return lambda target: setattr(target, name, value)


def _changes(node: ast.AST) -> Iterator[Change]:
    """The mutation operators: relational, logical, arithmetic and constant replacement,
    negated conditions, dropped decorators, deleted calls, ``return None``, dropped items."""
    line = getattr(node, "lineno", 1)
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            swapped = list(node.ops)
            swapped[index] = _COMPARISONS[type(op)]()
            yield (
                line,
                f"`{_SYMBOLS[type(op)]}` -> `{_SYMBOLS[type(swapped[index])]}`",
                _setting("ops", swapped),
            )
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield (
            line,
            f"`{_SYMBOLS[type(node.op)]}` -> `{_SYMBOLS[type(other)]}`",
            _setting("op", other),
        )
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        other = _ARITHMETIC[type(node.op)]()
        yield (
            line,
            f"`{_SYMBOLS[type(node.op)]}` -> `{_SYMBOLS[type(other)]}`",
            _setting("op", other),
        )
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield line, f"`not` dropped from `{_short(node)}`", lambda target: target.operand
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield line, f"`{node.value}` -> `{not node.value}`", _setting("value", not node.value)
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        yield line, f"`{node.value}` -> `{node.value + 1}`", _setting("value", node.value + 1)
    if isinstance(node, ast.If | ast.While | ast.IfExp) and not isinstance(
        node.test, ast.Compare | ast.UnaryOp
    ):
        yield (
            line,
            f"condition `{_short(node.test)}` negated",
            lambda target: setattr(target, "test", ast.UnaryOp(ast.Not(), target.test)),
        )
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        for index, decorator in enumerate(node.decorator_list):
            yield (
                decorator.lineno,
                f"decorator `@{_short(decorator)}` removed",
                _dropping("decorator_list", index=index),
            )
    if (
        isinstance(node, ast.Return)
        and node.value is not None
        and not (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        yield line, f"`return {_short(node.value)}` -> `return None`", _setting("value", None)
    for field in ("body", "orelse", "finalbody"):
        statements = getattr(node, field, None)
        for index, statement in enumerate(statements if isinstance(statements, list) else []):
            if isinstance(statement, ast.Expr) and isinstance(
                statement.value, ast.Call | ast.Await
            ):
                yield (
                    statement.lineno,
                    f"call `{_short(statement.value)}` deleted",
                    _passing(field, index),
                )
    if (
        isinstance(node, ast.Tuple | ast.List | ast.Set)
        and len(node.elts) > 1
        and not isinstance(getattr(node, "ctx", None), ast.Store)
        and not any(isinstance(element, ast.Starred) for element in node.elts)
    ):
        for index, element in enumerate(node.elts):
            yield (
                element.lineno,
                f"item `{_short(element)}` dropped from `{_short(node)}`",
                _dropping("elts", index=index),
            )
    if isinstance(node, ast.Dict) and len(node.keys) > 1 and None not in node.keys:
        for index, key in enumerate(node.keys):
            yield (
                key.lineno,
                f"key `{_short(key)}` dropped from `{_short(node)}`",
                _dropping("keys", "values", index=index),
            )


def _dropping(*fields: str, index: int) -> Callable[[ast.AST], None]:
    def drop(target: ast.AST) -> None:
        for field in fields:
            del getattr(target, field)[index]

    return drop


def _passing(field: str, index: int) -> Callable[[ast.AST], None]:
    """A statement of a body becomes ``pass``."""
    return lambda target: getattr(target, field).__setitem__(index, ast.Pass())


def _untouchable(tree: ast.Module) -> set[int]:
    """Docstrings, annotations, ``if TYPE_CHECKING:`` blocks and ``__all__``: no behaviour there."""
    skipped: list[ast.AST] = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skipped.append(body[0])
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            skipped.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            skipped.append(node.returns)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            skipped.append(node)
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            skipped.append(node)
    return {id(inner) for outer in skipped for inner in ast.walk(outer)}


def mutants_of(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    skipped = _untouchable(tree)
    found, seen = [], Counter[str]()
    for position, node in enumerate(ast.walk(tree)):
        if id(node) in skipped:
            continue
        for which, (line, change, _) in enumerate(_changes(node)):
            key = f"{path}|{lines[line - 1].strip()}|{change}"
            seen[key] += 1
            found.append(Mutant(path, line, position, which, change, f"{key}|{seen[key]}"))
    return found


def mutated_source(source: str, mutant: Mutant | None) -> str:
    """The module as Python would read it, with ``mutant`` applied (None: as it is)."""
    tree = ast.parse(source)
    if mutant is not None:
        node = next(node for position, node in enumerate(ast.walk(tree)) if position == mutant.node)
        _, _, apply = list(_changes(node))[mutant.which]
        replacement = apply(node)
        if replacement is not None:
            _replace(tree, node, replacement)
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
            elif isinstance(value, list) and any(item is old for item in value):
                value[[id(item) for item in value].index(id(old))] = new


def sample(mutants: list[Mutant], size: int | None, seed: int) -> list[Mutant]:
    """The ``size`` mutants first in an order set by ``seed``, kept when other lines change."""

    def rank(mutant: Mutant) -> str:
        return hashlib.sha256(f"{seed}|{mutant.identity}".encode()).hexdigest()

    chosen = mutants if size is None else sorted(mutants, key=rank)[:size]
    return sorted(chosen, key=lambda mutant: (mutant.line, mutant.node, mutant.which))


class Workspace:
    """A copy of the repository whose code the test processes import instead of the tree's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in _COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, folder / name, ignore=_NOT_COPIED, symlinks=True)
            elif source.exists():
                shutil.copy2(source, folder / name)
        # no bytecode: a mutant written in the same second as the last must not reuse its .pyc
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(folder), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def write(self, path: str, text: str) -> None:
        (self.folder / path).write_text(text, encoding="utf-8")

    def run_tests(self, tests: tuple[str, ...], timeout: float) -> tuple[str, str]:
        """``passed``, ``failed`` or ``timeout``, and pytest's last lines.

        A run that times out, or is interrupted, is stopped with all it started. It runs in
        one process (``-n 0``): a mutant's few test files gain nothing from workers.
        """
        with tempfile.TemporaryFile("w+") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    *tests,
                    "-x",
                    "-q",
                    "-n",
                    "0",
                    "-p",
                    "no:cacheprovider",
                ],
                cwd=self.folder,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                result = "passed" if process.wait(timeout) == 0 else "failed"
            except subprocess.TimeoutExpired:
                result = "timeout"
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            output.seek(0)
            return result, "\n".join(output.read().splitlines()[-15:])


def test_module(workspace: Workspace, path: str, mutants: list[Mutant]) -> Counter[str] | None:
    """Run the module's tests against each mutant; None if they fail without one."""
    source = (ROOT / path).read_text(encoding="utf-8")
    tests = TARGETS[path]
    workspace.write(path, mutated_source(source, None))
    started = time.monotonic()
    result, said = workspace.run_tests(tests, timeout=1800)
    if result != "passed":
        print(f"{path}: its tests fail without any mutant; fix that first:\n{said}", flush=True)
        return None
    timeout = 3 * (time.monotonic() - started) + 30
    outcomes = Counter[str]()
    try:
        for mutant in mutants:
            workspace.write(path, mutated_source(source, mutant))
            result, _ = workspace.run_tests(tests, timeout)
            outcome = {"failed": "killed", "passed": "survived"}.get(result, result)
            outcomes[outcome] += 1
            if outcome == "survived":
                print(f"  survived  {path}:{mutant.line}  {mutant.change}", flush=True)
    finally:
        workspace.write(path, source)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="only target modules whose path contains this text (repeatable)",
    )
    parser.add_argument("--sample", type=int, metavar="N", help="test N mutants per module")
    parser.add_argument("--seed", type=int, default=0, help="which sample (default 0)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the tests, remove the copy
    paths = [path for path in TARGETS if not args.module or any(m in path for m in args.module)]
    if not paths:
        parser.error(f"no target module matches {args.module}; targets: {', '.join(TARGETS)}")
    chosen = {path: sample(mutants_of(path), args.sample, args.seed) for path in paths}
    if args.list:
        for path, mutants in chosen.items():
            print(f"{path}: {len(mutants_of(path))} mutants, {len(mutants)} chosen")
            for mutant in mutants:
                print(f"  {path}:{mutant.line}  {mutant.change}")
        return 0
    totals = Counter[str]()
    with tempfile.TemporaryDirectory(prefix="stackmagic-mutation-") as folder:
        workspace = Workspace(Path(folder))
        for path, mutants in chosen.items():
            print(f"{path}: {len(mutants)} mutants, tests: {' '.join(TARGETS[path])}", flush=True)
            outcomes = test_module(workspace, path, mutants)
            if outcomes is None:
                continue
            totals += outcomes
            print(f"{path}: {_summary(outcomes)}", flush=True)
    print(f"all: {_summary(totals)}")
    return 0


def _summary(outcomes: Counter[str]) -> str:
    total = sum(outcomes.values())
    rate = outcomes["survived"] / total if total else 0.0
    return (
        f"killed {outcomes['killed']}, survived {outcomes['survived']}, "
        f"timeout {outcomes['timeout']} of {total}: survival rate {rate:.0%}"
    )


if __name__ == "__main__":
    sys.exit(main())
