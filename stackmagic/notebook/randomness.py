"""Seeded global random generators: the one thing a pipeline cannot replay from the notebook.

Run top to bottom, a notebook whose setup calls ``np.random.seed(0)`` draws
one sequence: the second step that draws continues where the first stopped.
In a pipeline every step runs the setup again in its own kernel, so each
step starts the sequence afresh and two drawing steps get the same numbers.
Nothing can carry the generator's state across parallel branches without
ordering them, so the pipeline says so instead, naming the steps.

"Draws" is read from the code: a call into the seeded module's random
functions, or a scikit-learn helper or estimator known to use numpy's global
generator when it is given no ``random_state``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

from .analysis import NameUse, python_source

#: Seeding calls, by module path, and the generator each seeds.
SEEDS = {
    "numpy.random.seed": "numpy.random",
    "random.seed": "random",
    "torch.manual_seed": "torch",
    "tensorflow.random.set_seed": "tensorflow.random",
    "tensorflow.keras.utils.set_random_seed": "tensorflow.random",
    "keras.utils.set_random_seed": "tensorflow.random",
}
#: Names under a generator's module that do not draw from the global generator.
NOT_DRAWING = frozenset(
    {
        "seed",
        "default_rng",
        "Generator",
        "RandomState",
        "SeedSequence",
        "BitGenerator",
        "PCG64",
        "MT19937",
        "Philox",
        "SFC64",
        "get_state",
        "set_state",
        "Random",
        "SystemRandom",
        "getstate",
        "setstate",
        "manual_seed",
        "set_seed",
        "initial_seed",
    }
)
#: torch's drawing functions (torch itself has much else).
TORCH_DRAWS = frozenset(
    {
        "rand",
        "randn",
        "randint",
        "randperm",
        "rand_like",
        "randn_like",
        "randint_like",
        "normal",
        "bernoulli",
        "multinomial",
        "poisson",
    }
)
#: Callables that draw from numpy's global generator unless given ``random_state``.
NUMPY_GLOBAL_USERS = frozenset(
    {
        "train_test_split",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "KMeans",
        "MiniBatchKMeans",
        "MLPClassifier",
        "MLPRegressor",
        "SGDClassifier",
        "SGDRegressor",
        "IsolationForest",
        "make_classification",
        "make_regression",
        "make_blobs",
        "make_moons",
        "make_circles",
        "ShuffleSplit",
        "StratifiedShuffleSplit",
        "RandomizedSearchCV",
        "permutation_importance",
        "sample",
    }
)


def seeded_generator_warnings(
    setup: Mapping[str, NameUse], steps: Mapping[str, NameUse], sources: Mapping[str, str]
) -> list[str]:
    """One warning per seeded global generator that more than one step draws from.

    ``setup`` and ``steps`` map each setup cell's and each step's source to its analysis.
    """
    modules = _module_paths(setup.values())
    seeded = seeded_generators(setup)
    warnings = []
    for generator in sorted(seeded):
        drawing = [
            name
            for name, use in steps.items()
            if _draws(sources[name], generator, {**modules, **_module_paths([use])})
        ]
        if len(drawing) > 1:
            shown = ", ".join(repr(name) for name in drawing)
            warnings.append(
                f"the setup seeds the global {generator} generator and steps {shown} each draw "
                "from it; in the notebook each continues the sequence, in the pipeline each "
                "starts it afresh from the seed: seed inside each step, or pass a seeded "
                "Generator (numpy.random.default_rng) from step to step"
            )
    return warnings


def seeded_generators(setup: Mapping[str, NameUse]) -> set[str]:
    """The global generators the setup cells seed: ``{"numpy.random", "random"}``."""
    modules = _module_paths(setup.values())
    return {
        SEEDS[path] for source in setup for path in _called_paths(source, modules) if path in SEEDS
    }


def _module_paths(uses: Iterable[NameUse]) -> dict[str, str]:
    """Each imported name's module path: ``np`` -> ``numpy``, ``npr`` -> ``numpy.random``."""
    paths = {}
    for use in uses:
        for name, statement in use.imports.items():
            node = ast.parse(statement).body[0]
            alias = node.names[0]  # type: ignore[attr-defined]
            if isinstance(node, ast.ImportFrom):
                paths[name] = f"{node.module}.{alias.name}" if node.module else alias.name
            else:
                paths[name] = alias.name if alias.asname else alias.name.split(".")[0]
    return paths


def _called_paths(source: str, modules: Mapping[str, str]) -> list[str]:
    """Every call in ``source`` as a module path (``np.random.seed(0)`` -> numpy.random.seed)."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return []
    return [
        path
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        if (path := _path(node.func, modules))
    ]


def _path(node: ast.expr, modules: Mapping[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([modules.get(node.id, node.id), *reversed(parts)])


def _draws(source: str, generator: str, modules: Mapping[str, str]) -> bool:
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        path = _path(node.func, modules) or ""
        module, _, function = path.rpartition(".")
        if generator == "torch":
            if module == "torch" and function in TORCH_DRAWS:
                return True
        elif module == generator and function not in NOT_DRAWING:
            return True
        if (
            generator == "numpy.random"
            and function in NUMPY_GLOBAL_USERS
            and not any(k.arg == "random_state" for k in node.keywords)
        ):
            return True
    return False
