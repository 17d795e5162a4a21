"""What code may change without binding it: in-place edits, and what called functions do.

A cell changes ``df`` when it assigns into it (``df['x'] = ...``,
``df.loc[m, 'c'] = 0``, ``obj.n += 1``), deletes from it (``del df['x']``),
calls a method on it that is not known to leave it alone (``items.append(3)``,
``model.fit(X, y)``, anything with ``inplace=True``), hands it to a function
known to fill or shuffle its argument (``random.shuffle(items)``, ``out=a``),
or does any of that through an alias (``frame = df``, ``for row in rows``).

Known read-only methods (``df.head()``, ``df.groupby(...)``,
``model.predict(X)``) are not changes, so steps that only look at the same
value still run side by side. A method known neither way *maybe* changes its
object: that counts for values steps made, where a change that was not one
costs a wait and one hash at run time (an unchanged value is passed on by
reference) and a change missed would cost a wrong result; not for what the
setup made (a client, a session, a logger), which every step makes afresh.

Functions the notebook defines are summarised by what they do to their
parameters and to globals, so ``clean(df)`` or ``configure(3)`` count as
what they do (``global config`` in ``configure`` binds ``config``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Methods that return something new and leave their object as it was (unless ``inplace=True``):
#: pandas, numpy, scikit-learn, plain containers and strings.
READ_ONLY_METHODS = frozenset(
    {
        # pandas and numpy: looking, computing, converting, plotting, writing out
        "head",
        "tail",
        "describe",
        "info",
        "groupby",
        "agg",
        "aggregate",
        "apply",
        "applymap",
        "map",
        "transform",
        "pipe",
        "copy",
        "mean",
        "median",
        "mode",
        "sum",
        "prod",
        "min",
        "max",
        "std",
        "var",
        "sem",
        "skew",
        "kurt",
        "count",
        "nunique",
        "unique",
        "value_counts",
        "isna",
        "isnull",
        "notna",
        "notnull",
        "corr",
        "corrwith",
        "cov",
        "quantile",
        "any",
        "all",
        "idxmax",
        "idxmin",
        "argmax",
        "argmin",
        "argsort",
        "nlargest",
        "nsmallest",
        "cumsum",
        "cumprod",
        "cummax",
        "cummin",
        "diff",
        "pct_change",
        "shift",
        "rolling",
        "expanding",
        "ewm",
        "resample",
        "round",
        "abs",
        "clip",
        "where",
        "mask",
        "between",
        "isin",
        "duplicated",
        "drop_duplicates",
        "drop",
        "dropna",
        "fillna",
        "replace",
        "rename",
        "sort_values",
        "sort_index",
        "reset_index",
        "set_index",
        "reindex",
        "astype",
        "query",
        "eval",
        "filter",
        "select_dtypes",
        "merge",
        "join",
        "concat",
        "pivot",
        "pivot_table",
        "melt",
        "stack",
        "unstack",
        "explode",
        "sample",
        "assign",
        "interpolate",
        "asfreq",
        "get",
        "keys",
        "items",
        "values",
        "iterrows",
        "itertuples",
        "iteritems",
        "equals",
        "memory_usage",
        "first",
        "last",
        "crosstab",
        "cut",
        "qcut",
        "factorize",
        "dot",
        "reshape",
        "ravel",
        "flatten",
        "transpose",
        "squeeze",
        "take",
        "nonzero",
        "tolist",
        "to_list",
        "to_numpy",
        "to_dict",
        "to_frame",
        "to_string",
        "to_csv",
        "to_json",
        "to_parquet",
        "to_excel",
        "to_pickle",
        "to_sql",
        "to_html",
        "to_markdown",
        "to_records",
        "to_datetime",
        "to_numeric",
        "plot",
        "hist",
        "boxplot",
        "style",
        "tofile",
        "save",
        "savefig",
        "show",
        "item",
        "all_equal",
        "allclose",
        "isclose",
        "searchsorted",
        # scikit-learn and friends: using a fitted model (fit, fit_transform, partial_fit change it)
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "score",
        "score_samples",
        "inverse_transform",
        "get_params",
        "get_feature_names_out",
        "evaluate",
        "summary",
        "staged_predict",
        "apply_async",
        # containers and text
        "index",
        "find",
        "rfind",
        "startswith",
        "endswith",
        "split",
        "rsplit",
        "splitlines",
        "strip",
        "lstrip",
        "rstrip",
        "lower",
        "upper",
        "title",
        "capitalize",
        "casefold",
        "format",
        "format_map",
        "encode",
        "decode",
        "zfill",
        "center",
        "ljust",
        "rjust",
        "isdigit",
        "isnumeric",
        "isalpha",
        "isalnum",
        "isspace",
        "issubset",
        "issuperset",
        "isdisjoint",
        "union",
        "intersection",
        "difference",
        "symmetric_difference",
        "partition",
        "rpartition",
        "expandtabs",
        "translate",
        "hex",
        "isoformat",
        "strftime",
        "read",
        "readline",
        "readlines",
        "exists",
        "is_file",
        "is_dir",
        "glob",
        "rglob",
        "read_text",
        "read_bytes",
        "joinpath",
        "with_suffix",
        "with_name",
        "resolve",
    }
)
#: Methods known to change their object: containers, arrays, estimators (and torch's ``add_``...).
CHANGING_METHODS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "update",
        "setdefault",
        "sort",
        "reverse",
        "add",
        "discard",
        "fit",
        "partial_fit",
        "fit_transform",
        "fit_predict",
        "fit_resample",
        "set_params",
        "resize",
        "fill",
        "itemset",
        "setflags",
        "__setitem__",
        "__delitem__",
        "load_state_dict",
    }
)
#: Functions and methods that change one of their arguments, by position.
CHANGES_ARGUMENT = {
    "shuffle": 0,
    "fill_diagonal": 0,
    "copyto": 0,
    "put": 0,
    "place": 0,
    "putmask": 0,
    "heappush": 0,
    "heappop": 0,
    "heapify": 0,
    "heapreplace": 0,
    "heappushpop": 0,
    "insort": 0,
    "insort_left": 0,
    "insort_right": 0,
    "setattr": 0,
    "delattr": 0,
}


@dataclass(frozen=True)
class Call:
    """A call of a plain name (``clean(df)``), by the names its arguments start from."""

    function: str
    arguments: tuple[str | None, ...]
    keywords: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class FunctionEffects:
    """What calling a function the notebook defines does beyond returning a value."""

    parameters: tuple[str, ...]
    local_names: frozenset[str]
    changed_parameters: frozenset[str]
    #: ``global x`` and then ``x = ...``: calling it binds the notebook's ``x``
    global_binds: frozenset[str]
    #: notebook names its body changes in place (``LOG.append(x)``)
    global_changes: frozenset[str]
    calls: tuple[Call, ...]


def root_name(node: ast.expr) -> str | None:
    """The name an expression's object hangs from: ``df`` for ``df.loc[m, 'c']``; None past a call."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class ChangeFinder(ast.NodeVisitor):
    """Collects the names statements change in place, and the plain-name calls they make.

    Visit statements in order: aliases (``frame = df``) bound by earlier ones
    count for later ones. Function and class bodies are not entered: they run
    when called, which is what :class:`FunctionEffects` is for.
    """

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        #: names surely changed, and names a method not known either way was called on
        self.changed: set[str] = set()
        self.maybe_changed: set[str] = set()
        self.calls: list[Call] = []

    def scan(self, node: ast.AST) -> tuple[set[str], set[str]]:
        """The names ``node`` surely and maybe changes (aliases resolved); its calls are kept."""
        before = (set(self.changed), set(self.maybe_changed))
        self.changed.clear()
        self.maybe_changed.clear()
        self.visit(node)
        found = (set(self.changed), self.maybe_changed - self.changed)
        self.changed |= before[0]
        self.maybe_changed |= before[1]
        return found

    def _origin(self, name: str | None) -> str | None:
        return None if name is None else self.aliases.get(name, name)

    def _change(self, node: ast.expr, *, surely: bool = True) -> None:
        name = self._origin(root_name(node))
        if name is not None:
            (self.changed if surely else self.maybe_changed).add(name)

    def _target(self, target: ast.expr) -> None:
        if isinstance(target, ast.Attribute | ast.Subscript):
            self._change(target.value)
            self.generic_visit(target)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._target(element)
        elif isinstance(target, ast.Starred):
            self._target(target.value)

    def alias(self, target: ast.expr, value: ast.expr | None) -> None:
        """``target = value``: a name bound to part of another name's object aliases it."""
        if not isinstance(target, ast.Name):
            return
        origin = self._origin(root_name(value)) if value is not None else None
        if origin is not None and origin != target.id:
            self.aliases[target.id] = origin
        else:
            self.aliases.pop(target.id, None)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._target(target)
            self.alias(target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self._target(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._target(node.target)
            self.alias(node.target, node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.alias(node.target, node.iter)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        changed_argument = None
        if isinstance(function, ast.Attribute):
            method = function.attr
            if _in_place(node) or method in CHANGING_METHODS or _changing_by_name(method):
                self._change(function.value)
            elif method not in READ_ONLY_METHODS:
                self._change(function.value, surely=False)
            changed_argument = CHANGES_ARGUMENT.get(method)
        elif isinstance(function, ast.Name):
            changed_argument = CHANGES_ARGUMENT.get(function.id)
            self.calls.append(
                Call(
                    function.id,
                    tuple(self._origin(root_name(argument)) for argument in node.args),
                    tuple(
                        (k.arg, self._origin(root_name(k.value))) for k in node.keywords if k.arg
                    ),
                )
            )
        if changed_argument is not None and len(node.args) > changed_argument:
            self._change(node.args[changed_argument])
        for keyword in node.keywords:
            if keyword.arg == "out":
                self._change(keyword.value)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.AST) -> None:
        return  # its body runs when called

    visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = visit_FunctionDef


def _changing_by_name(method: str) -> bool:
    """``tensor.add_(1)`` (torch's in-place methods end in ``_``), ``tokenizer.fit_on_texts(t)``."""
    return (method.endswith("_") and not method.startswith("_")) or method.startswith("fit")


def _in_place(call: ast.Call) -> bool:
    return any(
        k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def summarise(function: ast.FunctionDef | ast.AsyncFunctionDef) -> FunctionEffects:
    """What ``function`` does to its parameters and to the notebook's names when called."""
    arguments = function.args
    parameters = tuple(a.arg for a in (*arguments.posonlyargs, *arguments.args))
    every_parameter = {*parameters, *(a.arg for a in arguments.kwonlyargs)}
    every_parameter |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
    declared_global: set[str] = set()
    stored: set[str] = set()
    for node in _own_nodes(function.body):
        if isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            stored.add(node.id)
        elif isinstance(node, ast.alias):
            stored.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stored.add(node.name)
    local_names = frozenset((stored | every_parameter) - declared_global)
    finder = ChangeFinder()
    for statement in function.body:
        finder.visit(statement)
    return FunctionEffects(
        parameters=parameters,
        local_names=local_names,
        changed_parameters=frozenset((finder.changed | finder.maybe_changed) & every_parameter),
        global_binds=frozenset(declared_global & stored),
        global_changes=frozenset(finder.changed - local_names),
        calls=tuple(finder.calls),
    )


def _own_nodes(statements: Iterable[ast.stmt]) -> Iterable[ast.AST]:
    """Every node of a function's body, not entering functions or classes defined in it."""
    pending: list[ast.AST] = list(statements)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def call_effects(
    call: Call, functions: Mapping[str, FunctionEffects], calling: frozenset[str] = frozenset()
) -> tuple[set[str], set[str]]:
    """The names a call binds and changes, following the calls inside the function (no cycles)."""
    effects = functions.get(call.function)
    if effects is None or call.function in calling:
        return set(), set()
    passed = dict(zip(effects.parameters, call.arguments))
    passed.update(call.keywords)
    binds = set(effects.global_binds)
    changes = set(effects.global_changes)
    changes.update(name for p in effects.changed_parameters if (name := passed.get(p)))
    for inner in effects.calls:
        inner_binds, inner_changes = call_effects(inner, functions, calling | {call.function})
        binds |= inner_binds
        for name in inner_changes:
            if name in passed:  # a parameter of this function: the caller's name, if it gave one
                changes.update(filter(None, [passed[name]]))
            elif name not in effects.local_names:
                changes.add(name)
    return binds, changes
