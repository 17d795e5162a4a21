"""What every flavor's configuration shares.

A flavor is one class of typed traits. That single declaration drives
validation, the ``--key=value`` options of the CLI and magics, the ipywidgets
registration form and the JSON schema of ``TYPE flavors --json``. Traits are
tagged ``secret=True`` (kept out of the config, masked in output),
``required=True`` (must be given) or ``local_path=True`` (a path on this
machine, made absolute against the directory it was given in).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import traitlets as t

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..secrets import masked

if TYPE_CHECKING:
    from ..open_stack import OpenStack
    from ..operators.base import StepOperator
    from ..orchestrators.base import Orchestrator
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import MetadataStore
    from ..trackers.base import ExperimentTracker


#: The real value of one of a component's secret options, by option name.
SecretResolver = Callable[[str], str]
#: One option of a flavor: a trait its config class declares.
Option = t.TraitType[Any, Any]


class FlavorConfig(t.HasTraits):
    """Base of every flavor's options. Subclasses set ``component_type`` and ``flavor``."""

    component_type: ClassVar[ComponentType]
    flavor: ClassVar[str]
    #: Stores: False where the store lives on this machine, out of reach of remote steps.
    is_remote: ClassVar[bool] = True

    @property
    def runs_remotely(self) -> bool:
        """Orchestrators and step operators: True where steps run off this machine."""
        return False

    @classmethod
    def summary(cls) -> str:
        return inspect.cleandoc(cls.__doc__).splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def options(cls) -> dict[str, Option]:
        """The option traits, in the order the class declares them."""
        found: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, t.TraitType) and not name.startswith("_"):
                    found[name] = value
        return found

    @classmethod
    def from_options(
        cls, values: Mapping[str, Any], base_dir: Path, *, given_only: bool = False
    ) -> FlavorConfig:
        """Build and validate a config from option values (strings from a command line, or stored JSON).

        Relative local paths are taken from ``base_dir``: the registry folder for
        stored config, where defaults such as ``artifacts`` live too; the user's
        working directory for a command, which then resolves only what it gave
        (``given_only``), so defaults stay inside the registry folder.
        """
        config = cls()
        config.apply(values)
        config.resolve_paths(base_dir, values if given_only else None)
        config.check()
        return config

    def resolve_paths(self, base_dir: Path, names: Iterable[str] | None = None) -> None:
        """Make local paths absolute: all of them, or only the options in ``names``."""
        wanted = None if names is None else {name.replace("-", "_") for name in names}
        for name, trait in self.options().items():
            value = getattr(self, name)
            if trait.metadata.get("local_path") and value and (wanted is None or name in wanted):
                setattr(self, name, str((base_dir / Path(value).expanduser()).resolve()))

    def apply(self, values: Mapping[str, Any]) -> None:
        options = self.options()
        for raw_name, raw_value in values.items():
            name = raw_name.replace("-", "_")
            if name not in options:
                valid = ", ".join(option_flag(option) for option in options) or "none"
                raise StackmagicError(
                    f"the {self.flavor} {self.component_type.noun} flavor has no option "
                    f"{option_flag(raw_name)}; its options are: {valid}"
                )
            trait = options[name]
            value = _coerce(name, trait, raw_value)
            if trait.metadata.get("local_path") and trait.default() and not value:
                raise StackmagicError(f"{option_flag(name)} cannot be empty")
            try:
                setattr(self, name, value)
            except t.TraitError as exc:
                raise StackmagicError(f"{option_flag(name)}: {_trait_message(exc)}") from None

    def check(self) -> None:
        """Cross-option validation; the base checks that required options were given."""
        missing = [
            option_flag(name)
            for name, trait in self.options().items()
            if trait.metadata.get("required") and getattr(self, name) in ("", None)
        ]
        if missing:
            raise StackmagicError(
                f"the {self.flavor} {self.component_type.noun} flavor needs {', '.join(missing)} "
                f"(see `stackmagic {self.component_type.value} flavors`)"
            )

    def check_given(self) -> None:
        """Checks of this machine made when options are given in a command (a file they name
        must be of the right kind); stored options are not checked again on every read."""

    def stored(self) -> dict[str, Any]:
        """Option values that differ from their defaults: what the registry keeps."""
        return {
            name: getattr(self, name)
            for name, trait in self.options().items()
            if getattr(self, name) != trait.default()
        }

    def shown(self) -> dict[str, Any]:
        """Every option with secrets masked: what output and APIs may show."""
        return {
            name: masked(getattr(self, name))
            if trait.metadata.get("secret")
            else getattr(self, name)
            for name, trait in self.options().items()
        }

    def secret_references(self) -> dict[str, str]:
        return {
            name: getattr(self, name)
            for name, trait in self.options().items()
            if trait.metadata.get("secret") and getattr(self, name)
        }

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """A JSON description of the flavor's options, for forms and ``flavors --json``."""
        return {
            "type": cls.component_type.value,
            "flavor": cls.flavor,
            "summary": cls.summary(),
            "options": [
                {
                    "name": option_flag(name)[2:],
                    "kind": _kind(trait),
                    "help": trait.help,
                    "default": None if trait.metadata.get("secret") else trait.default(),
                    "required": bool(trait.metadata.get("required")),
                    "secret": bool(trait.metadata.get("secret")),
                    **({"choices": list(trait.values or ())} if isinstance(trait, t.Enum) else {}),
                }
                for name, trait in cls.options().items()
            ],
        }

    def local_paths(self) -> list[Path]:
        """Files and folders of this component on this machine: never part of a bundle."""
        return []

    def not_runnable(self) -> StackmagicError:
        return StackmagicError(
            f"this stackmagic cannot run pipelines with the {self.flavor} "
            f"{self.component_type.noun} yet; use a stack with the local one "
            "(`stackmagic stack set default`)"
        )


class ArtifactStoreConfig(FlavorConfig):
    component_type = ComponentType.ARTIFACT_STORE

    def open(self, secret: SecretResolver) -> ArtifactStore:
        """The store itself, with its secrets resolved, ready to read and write."""
        raise self.not_runnable()


class MetadataStoreConfig(FlavorConfig):
    component_type = ComponentType.METADATA_STORE

    def open(self, secret: SecretResolver) -> MetadataStore:
        """A connection to the store, its schema brought up to date."""
        raise self.not_runnable()


class OrchestratorConfig(FlavorConfig):
    component_type = ComponentType.ORCHESTRATOR

    @property
    def runs_remotely(self) -> bool:
        return True

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        """What runs a pipeline's steps for this flavor, on ``stack``."""
        raise self.not_runnable()


class StepOperatorConfig(FlavorConfig):
    """What every step operator has: a step runs as a job in a container image, which reads
    the stores' secrets from where ``store_secret`` names, and is looked at now and then."""

    component_type = ComponentType.STEP_OPERATOR
    #: the module whose ``BACKEND`` runs the jobs (``stackmagic.operators.NAME``), the
    #: package it needs, and the extra that installs that package
    module: ClassVar[str] = ""
    sdk: ClassVar[str] = ""
    extra: ClassVar[str] = ""

    image = t.Unicode(
        help="Container image the step runs in (with stackmagic and the notebook's packages); "
        "a step's --image takes precedence."
    )
    store_secret = t.Unicode(
        help="Secret holding the stores' secret options as JSON "
        '({"STACKMAGIC_METADATA_STORE_PASSWORD": ...}); the job reads it when it starts.'
    )
    max_runtime = t.Int(24 * 3600, help="Seconds the job may run before the backend stops it.")
    poll_seconds = t.Float(10.0, help="How often the job's state and log are asked.")

    @t.validate("max_runtime")
    def _check_runtime(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 60:
            raise t.TraitError("expects 60 seconds or more")
        return int(proposal["value"])

    @t.validate("poll_seconds")
    def _check_poll(self, proposal: dict[str, Any]) -> float:
        if not 0.1 <= proposal["value"] <= 600:
            raise t.TraitError("expects from 0.1 to 600 seconds")
        return float(proposal["value"])

    @property
    def runs_remotely(self) -> bool:
        return True

    def operator(self, name: str, secret: SecretResolver) -> StepOperator[Any]:
        """The backend that runs steps as jobs, for the stack's step operator called ``name``."""
        if not self.module:
            raise self.not_runnable()
        require_module(self.sdk, f"the {self.flavor} step operator", self.extra)
        backend: type[StepOperator[Any]] = importlib.import_module(self.module).BACKEND
        return backend(name, self, secret)


class ExperimentTrackerConfig(FlavorConfig):
    """What every experiment tracker has: runs are mirrored there, executed notebooks with them."""

    component_type = ComponentType.EXPERIMENT_TRACKER
    #: the module whose ``TRACKER`` class talks to the tracker (``stackmagic.trackers.NAME``),
    #: the package it needs, and the extra that installs that package
    module: ClassVar[str] = ""
    sdk: ClassVar[str] = ""
    extra: ClassVar[str] = ""

    notebooks = t.Enum(
        ["upload", "link"],
        "upload",
        help="Each executed step notebook: uploaded to the tracker as an artifact (upload), "
        "or linked where the artifact store keeps it (link).",
    )

    @property
    def is_remote(self) -> bool:  # type: ignore[override]
        """False where the tracker keeps runs on this machine, out of reach of remote steps."""
        return True

    def tracker(self, secret: SecretResolver) -> ExperimentTracker[Any]:
        """The tracker's client, its secrets resolved: what mirrors runs there."""
        if not self.module:
            raise self.not_runnable()
        require_module(self.sdk, f"the {self.flavor} experiment tracker", self.extra)
        tracker: type[ExperimentTracker[Any]] = importlib.import_module(self.module).TRACKER
        return tracker(self, secret)


_Kind = TypeVar("_Kind", bound=FlavorConfig)


def as_kind(config: FlavorConfig, kind: type[_Kind]) -> _Kind:
    """``config`` as the base class of its component type, whose methods the caller needs.

    Flavors are looked up by component type, so this holds for every built-in flavor; a
    flavor another package declares may have skipped the base class, which is its fault.
    """
    if not isinstance(config, kind):
        raise StackmagicError(
            f"the {config.flavor} {config.component_type.noun} flavor cannot be used: its class "
            f"{type(config).__module__}.{type(config).__qualname__} does not derive from "
            f"stackmagic's {kind.__name__}; tell the makers of the package that declares it"
        )
    return config


def require_module(module: str, needed_by: str, extra: str) -> None:
    """Refuse early, with the install command, when an optional driver is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise StackmagicError(
            f"{needed_by} needs the Python package {module!r}, which is not installed; "
            f'install it with `pip install "stackmagic[{extra}]"`'
        ) from None


def _kind(trait: Option) -> str:
    if isinstance(trait, t.Bool):
        return "boolean"
    if isinstance(trait, t.Int):
        return "integer"
    if isinstance(trait, t.Float):
        return "number"
    if isinstance(trait, t.Enum):
        return "choice"
    if isinstance(trait, t.Dict):
        return "mapping"
    if isinstance(trait, t.List):
        return "list"
    return "string"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(name: str, trait: Option, value: Any) -> Any:
    """Turn a command-line string into the trait's type, with a message a user can act on.

    ``None`` stands for a bare ``--flag``: true for a boolean, a mistake otherwise.
    """
    option = option_flag(name)
    kind = _kind(trait)
    if value is None:
        if kind != "boolean":
            raise StackmagicError(f"{option} needs a value: {option}=VALUE")
        return True
    if not isinstance(value, str):
        return value
    try:
        if kind == "boolean":
            lowered = value.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError
            return lowered in _TRUE
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "mapping":
            pairs = [item for item in value.split(",") if item.strip()]
            if any("=" not in item for item in pairs):
                raise ValueError
            return {key.strip(): val.strip() for key, val in (p.split("=", 1) for p in pairs)}
        if kind == "list":
            return [item.strip() for item in value.split(",") if item.strip()]
    except ValueError:
        expected = {
            "boolean": "true or false",
            "integer": "a whole number",
            "number": "a number",
            "mapping": "KEY=VALUE pairs separated by commas",
        }[kind]
        raise StackmagicError(f"{option} expects {expected}, not {value!r}") from None
    if isinstance(trait, t.Enum) and value not in (trait.values or ()):
        choices = ", ".join(str(choice) for choice in trait.values or ())
        raise StackmagicError(f"{option} must be one of {choices}, not {value!r}")
    return value


def option_flag(name: str) -> str:
    """``endpoint_url`` -> ``--endpoint-url``: how users type an option."""
    return "--" + name.replace("_", "-")


def format_value(value: Any) -> str:
    """An option value as it is typed on a command line: the inverse of ``_coerce``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


def _trait_message(error: t.TraitError) -> str:
    """traitlets' messages name classes and types; keep only the sentence a user needs."""
    return str(error).split("\n")[0]
