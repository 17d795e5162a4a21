"""ipywidgets for stacks: a switcher and a registration form built from flavor traits.

Both act through the same :class:`~stackmagic.registry.Registry` calls as the
commands, so a click is exactly ``stack set`` or ``TYPE register``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as w
import traitlets as t

from .commands import stacks_table
from .errors import StackmagicError
from .flavors import ComponentType, FlavorConfig, Option, flavors_of, format_value, option_flag
from .registry import Registry


def _status(widget: w.HTML, message: str, *, ok: bool) -> None:
    from .magics import in_notebook_words

    message = in_notebook_words(message)
    colour = "var(--jp-success-color1, #2e7d32)" if ok else "var(--jp-error-color1, #c62828)"
    widget.value = f"<span style='color:{colour}'>{html.escape(message, quote=False)}</span>"


class StackSwitcher(w.VBox):
    """The stacks with their components, the active one marked, and a button to activate another."""

    def __init__(self, registry: Registry | None = None, **kwargs: Any) -> None:
        self.registry = registry or Registry.open()
        self.table = w.HTML()
        self.choice = w.Dropdown(description="Stack")
        self.activate = w.Button(description="Activate", button_style="success", icon="check")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.status = w.HTML()
        self.activate.on_click(lambda _: self.activate_selected())
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__(
            [self.table, w.HBox([self.choice, self.activate, self.refresh_button]), self.status],
            **kwargs,
        )
        self.refresh()

    def refresh(self) -> None:
        """Re-read the registry: another kernel or a terminal may have changed it."""
        self.table.value = stacks_table(self.registry)._repr_html_()
        self.choice.options = [stack.name for stack in self.registry.stacks()]
        self.choice.value = self.registry.active_stack_name()

    def activate_selected(self) -> None:
        try:
            stack = self.registry.set_active_stack(self.choice.value)
        except StackmagicError as error:
            _status(self.status, str(error), ok=False)
            return
        self.refresh()
        _status(self.status, f"Active stack: {stack.name}", ok=True)


class RegistrationForm(w.VBox):
    """A form for one component type; its fields follow the chosen flavor's options."""

    def __init__(
        self, kind: ComponentType, registry: Registry | None = None, **kwargs: Any
    ) -> None:
        self.kind = kind
        self.registry = registry or Registry.open()
        self._flavors = flavors_of(kind)
        self.flavor = w.Dropdown(options=list(self._flavors), description="Flavor")
        self.name = w.Text(description="Name", placeholder=f"name of {kind.a_noun}")
        self.fields: dict[str, w.ValueWidget] = {}
        self.options_box = w.VBox()
        self.register = w.Button(description=f"Register {kind.noun}", button_style="primary")
        self.status = w.HTML()
        self.flavor.observe(lambda _: self._build_fields(), "value")
        self.register.on_click(lambda _: self.submit())
        super().__init__(
            [
                w.HTML(f"<b>Register {kind.a_noun}</b>"),
                self.flavor,
                self.name,
                self.options_box,
                self.register,
                self.status,
            ],
            **kwargs,
        )
        self._build_fields()

    def _build_fields(self) -> None:
        flavor: type[FlavorConfig] = self._flavors[self.flavor.value]
        self.fields = {name: _field_for(name, trait) for name, trait in flavor.options().items()}
        self.options_box.children = [
            w.HTML(f"<i>{html.escape(flavor.summary())}</i>"),
            *self.fields.values(),
        ]

    def values(self) -> dict[str, str | None]:
        """The options the user filled in, as the command line would give them."""
        flavor = self._flavors[self.flavor.value]
        given: dict[str, str | None] = {}
        for name, field in self.fields.items():
            value = format_value(field.value)
            if value and value != format_value(flavor.options()[name].default()):
                given[name] = value
        return given

    def submit(self) -> None:
        try:
            component = self.registry.register_component(
                self.kind, self.name.value.strip(), self.flavor.value, self.values(), Path.cwd()
            )
        except StackmagicError as error:
            _status(self.status, str(error), ok=False)
            return
        for field in self.fields.values():
            if isinstance(field, w.Password):
                field.value = ""
        _status(
            self.status,
            f"Registered {self.kind.noun} {component.name!r} ({component.flavor}).",
            ok=True,
        )


def _field_for(name: str, trait: Option) -> w.ValueWidget:
    label = option_flag(name)[2:] + (" *" if trait.metadata.get("required") else "")
    common = {
        "description": label,
        "tooltip": trait.help,
        "style": {"description_width": "initial"},
    }
    if trait.metadata.get("secret"):
        return w.Password(placeholder="hidden; or env:VARIABLE", **common)
    if isinstance(trait, t.Bool):
        return w.Checkbox(value=trait.default(), indent=False, **common)
    if isinstance(trait, t.Enum):
        return w.Dropdown(options=list(trait.values or ()), value=trait.default(), **common)
    if isinstance(trait, t.Int):
        return w.IntText(value=trait.default(), **common)
    return w.Text(value=format_value(trait.default()), placeholder=trait.help, **common)
