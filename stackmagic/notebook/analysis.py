"""Which names a cell reads and which it binds, found statically.

Cells are IPython code: IPython's own transformer turns magics and shell
lines into Python first (``x = !ls`` still binds ``x``), and the code inside
``%time``/``%timeit``/``%%time`` is analysed as code. Names are resolved with
:mod:`symtable`, statement by statement, so a name counts as *read* only if
the cell reads it before binding it; reads inside functions and classes the
cell defines count too, since they happen when those are called.
"""

from __future__ import annotations

import ast
import builtins
import functools
import symtable
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from ..errors import StackmagicError
from .effects import Call, ChangeFinder, FunctionEffects, summarise

#: Magics whose argument (or cell body) is Python code that runs in the user namespace.
CODE_MAGICS = frozenset({"time", "timeit", "prun"})
#: Names IPython puts in every namespace; reading them is never an input.
KERNEL_NAMES = frozenset({"get_ipython", "display", "In", "Out", "exit", "quit"})
_IGNORED = KERNEL_NAMES | frozenset(dir(builtins))


@dataclass(frozen=True)
class Definition:
    """A ``def`` as a later step runs it again: in its own namespace, as in the notebook."""

    source: str
    #: what defining it reads (decorators, defaults) and what its body reads of the notebook's
    reads: frozenset[str]


@dataclass(frozen=True)
class NameUse:
    reads: frozenset[str]
    binds: frozenset[str]
    #: ``from x import *`` or ``%run script.py`` bind names no analysis can list.
    opaque: bool = False
    #: Names read from before the cell that it changes in place, surely or maybe (``effects``).
    changes: frozenset[str] = frozenset()
    maybe_changes: frozenset[str] = frozenset()
    #: Names whose last binding in the cell is an import: the statement that binds each.
    imports: Mapping[str, str] = field(default_factory=dict)
    #: Functions whose last binding in the cell is their ``def``: its source, and what it reads.
    definitions: Mapping[str, Definition] = field(default_factory=dict)
    #: Names the cell deletes (``del big``) and does not bind again.
    deleted: frozenset[str] = frozenset()
    #: Functions the cell defines, by name, and the calls of plain names it makes.
    functions: Mapping[str, FunctionEffects] = field(default_factory=dict)
    calls: tuple[Call, ...] = ()


@functools.lru_cache(maxsize=512)
def python_source(cell: str) -> str:
    """The Python that IPython would run for ``cell``; the analyses each ask, so it is kept."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell)


def analyse(cell: str, where: str) -> NameUse:
    """Names ``cell`` reads before binding them, and names it binds; ``where`` names it in errors."""
    try:
        tree = ast.parse(python_source(cell))
    except SyntaxError as error:
        raise StackmagicError(
            f"{where} has a syntax error at line {error.lineno}: {error.msg}; fix it and save the notebook"
        ) from None
    flow = _Flow()
    flow.statements(_expand_code_magics(tree.body))
    return NameUse(
        reads=frozenset(flow.reads - _IGNORED),
        binds=frozenset(flow.binds),
        opaque=flow.opaque,
        changes=frozenset(flow.changes - _IGNORED),
        maybe_changes=frozenset(flow.maybe_changes - flow.changes - _IGNORED),
        imports=flow.imports,
        definitions=flow.definitions,
        deleted=frozenset(flow.deleted),
        functions=flow.functions,
        calls=tuple(flow.finder.calls),
    )


class _Flow:
    """Walks module-level code in execution order, so ``for i in ...`` binds ``i`` before the body reads it."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.binds: set[str] = set()
        self.opaque = False
        self.changes: set[str] = set()
        self.maybe_changes: set[str] = set()
        self.imports: dict[str, str] = {}
        self.definitions: dict[str, Definition] = {}
        self.deleted: set[str] = set()
        self.functions: dict[str, FunctionEffects] = {}
        self.finder = ChangeFinder()

    def statements(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.For | ast.AsyncFor):
            self.expression(node.iter)
            self.target(node.target)
            self.finder.alias(node.target, node.iter)
            self.statements(node.body + node.orelse)
        elif isinstance(node, ast.If | ast.While):
            self.expression(node.test)
            self.statements(node.body + node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.expression(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.statements(node.body)
        elif isinstance(node, ast.Try):
            self.statements(node.body)
            for handler in node.handlers:
                if handler.type is not None:
                    self.expression(handler.type)
                if handler.name:
                    self.binds.add(handler.name)
                self.statements(handler.body)
            self.statements(node.orelse + node.finalbody)
        elif isinstance(node, ast.Delete):
            self.delete(node)
        else:
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self.note({node.target.id}, set())  # `total += x` reads total first
            self.changed(*self.finder.scan(node))
            reads, binds = _statement_names(node)
            self.note(reads, binds)
            self.opaque |= _binds_unknown_names(node)
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.imports.update(_import_statements(node))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[node.name] = summarise(node)
                self.definitions[node.name] = Definition(
                    ast.unparse(node), frozenset(reads - _IGNORED - {node.name})
                )

    def expression(self, node: ast.expr) -> None:
        self.changed(*self.finder.scan(node))
        self.note(*_statement_names(ast.Expr(node)))

    def changed(self, surely: Set[str], maybe: Set[str] = frozenset()) -> None:
        """Changing a name's object in place reads it first: it must be there."""
        self.changes |= surely - self.binds
        self.maybe_changes |= maybe - self.binds
        self.note(surely | maybe, set())

    def delete(self, node: ast.Delete) -> None:
        """``del big`` reads ``big`` and unbinds it; ``del df['x']`` changes ``df``."""
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.note({target.id}, set())
                self.binds.discard(target.id)
                self.imports.pop(target.id, None)
                self.definitions.pop(target.id, None)
                self.deleted.add(target.id)
            else:
                self.changed(*self.finder.scan(ast.Delete(targets=[target])))
                self.expression(_loaded(target))

    def target(self, node: ast.expr) -> None:
        """Binding a target reads what its subscripts and attributes need (``a[i] = ...``)."""
        reads, binds = _statement_names(
            ast.Assign(targets=[node], value=ast.Constant(None), lineno=0)
        )
        self.note(reads, binds)

    def note(self, reads: Set[str], binds: Set[str]) -> None:
        self.reads |= reads - self.binds
        self.binds |= binds
        self.deleted -= binds
        for name in binds:
            self.imports.pop(name, None)
            self.definitions.pop(name, None)


def _loaded(target: ast.expr) -> ast.expr:
    """A deletion target as the expression it reads (``df['x']``)."""
    return ast.parse(ast.unparse(target), mode="eval").body


def _import_statements(node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """Each name an import binds, with the import statement that binds just that name."""
    found = {}
    for alias in node.names:
        if alias.name == "*":
            continue
        bound = alias.asname or alias.name.split(".")[0]
        if isinstance(node, ast.Import):
            found[bound] = ast.unparse(ast.Import(names=[alias]))
        else:
            found[bound] = ast.unparse(
                ast.ImportFrom(module=node.module, names=[alias], level=node.level)
            )
    return found


def _binds_unknown_names(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.ImportFrom):
        return any(alias.name == "*" for alias in statement.names)
    magic = _magic_call(statement)
    return magic is not None and magic[0] == "run"


def _statement_names(statement: ast.stmt) -> tuple[set[str], set[str]]:
    module = ast.Module(body=[statement], type_ignores=[])
    try:
        table = symtable.symtable(ast.unparse(module), "<cell>", "exec")
    except SyntaxError:  # e.g. a bare `return` in a cell: not ours to judge, IPython reports it
        return set(), set()
    reads = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    binds = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    for child in table.get_children():
        reads |= _global_reads(child)
    return reads, binds


def _global_reads(table: symtable.SymbolTable) -> set[str]:
    names = {s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced()}
    for child in table.get_children():
        names |= _global_reads(child)
    return names


def _expand_code_magics(statements: list[ast.stmt]) -> list[ast.stmt]:
    """Replace ``get_ipython().run_line_magic('time', 'code')`` by the statements of ``code``."""
    expanded: list[ast.stmt] = []
    for statement in statements:
        code = _code_magic_argument(statement)
        if code is None:
            expanded.append(statement)
            continue
        try:
            expanded += _expand_code_magics(ast.parse(python_source(code)).body)
        except SyntaxError:
            expanded.append(statement)
    return expanded


def _magic_call(statement: ast.stmt) -> tuple[str, list[str], bool] | None:
    """``(magic, arguments, is_line_magic)`` for a statement IPython made from a magic."""
    call = statement.value if isinstance(statement, ast.Expr | ast.Assign) else None
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "get_ipython"
        and call.args
        and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in call.args)
    ):
        return None
    name, *arguments = (arg.value for arg in call.args)  # type: ignore[attr-defined]
    return name, arguments, call.func.attr == "run_line_magic"


def _code_magic_argument(statement: ast.stmt) -> str | None:
    magic = _magic_call(statement)
    if magic is None or magic[0] not in CODE_MAGICS or not magic[1]:
        return None
    _, arguments, is_line_magic = magic
    code = arguments[-1]
    if is_line_magic:  # drop options such as `%timeit -n1 -r1 f()`
        words = code.split()
        while words and words[0].startswith("-"):
            words.pop(0)
        code = " ".join(words)
    return code
