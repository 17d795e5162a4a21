"""IPython magics: the ``stackmagic`` grammar as ``%stack``, ``%artifact-store``...

Each magic prepends its own name to the line and runs the shared parser, so
``%stack set gcp`` is exactly ``stackmagic stack set gcp``. With no arguments,
``%stack`` shows the stack switcher and a component magic its registration
form.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.display import display

from .argparsing import HelpShown
from .component_type import ComponentType
from .errors import RunFailed, StackmagicError, UsageError, describe_os_error
from .secrets import MASK, SecretInCell

STACK = "stack"
PIPELINE = "pipeline"
GC = "gc"
#: ``%stackmagic`` takes the whole grammar (``%stackmagic init``); the others are its commands.
WHOLE_GRAMMAR = "stackmagic"
MAGICS = (WHOLE_GRAMMAR, STACK, *(kind.value for kind in ComponentType), PIPELINE, GC)


def register_magics(ipython: Any) -> None:
    for name in MAGICS:
        ipython.register_magic_function(_line_magic(ipython, name), "line", name)
    ipython.register_magic_function(_step_magic(ipython), "cell", "step")
    ipython.register_magic_function(_notebook_only_magic(ipython), "cell", "notebook-only")


def _notebook_only_magic(ipython: Any) -> Callable[[str, str], None]:
    def notebook_only(line: str, cell: str) -> None:
        """%%notebook-only: runs here, left out of the pipeline (`!pip install ...`, a quick look)."""
        if line.strip():
            raise IPythonUsageError(
                "%%notebook-only takes no arguments: the cell's body is its code"
            )
        ipython.run_cell(cell, store_history=False)

    return notebook_only


def _step_magic(ipython: Any) -> Callable[[str, str], None]:
    def step(line: str, cell: str) -> None:
        """%%step NAME [--after STEP ...] [options]: a pipeline step; run here, it runs its body."""
        from .notebook.steps import parse_step_line

        try:
            settings = parse_step_line(line)
        except HelpShown:
            return
        except UsageError as error:
            raise IPythonUsageError(f"%%step: {error} (see `%%step --help`)") from None
        result = ipython.run_cell(cell, store_history=False)
        if not result.success:
            raise IPythonUsageError(f"step {settings.name!r} failed: see the error above")

    return step


def shell_words(line: str) -> list[str]:
    """A magic's line split as a shell splits it: a word starting with ``#`` begins a comment.

    ``shlex``'s own comments would also cut ``--password=p#ss`` short.
    """
    lexer = shlex.shlex(line, posix=False)  # raw words: quotes kept, so a quoted '#' stays put
    lexer.whitespace_split, lexer.commenters = True, ""
    words = []
    for word in lexer:
        if word.startswith("#"):
            break
        words.append(word)
    return shlex.split(" ".join(words))


def in_notebook_words(message: str) -> str:
    """Messages quote terminal commands; in a notebook, quote the magic instead."""
    return message.replace("`stackmagic ", "`%")


def _line_magic(ipython: Any, command: str) -> Callable[[str], None]:
    prefix = [] if command == WHOLE_GRAMMAR else [command]

    def magic(line: str) -> None:
        try:
            words = shell_words(line)
        except ValueError as error:
            raise IPythonUsageError(f"%{command}: {error}") from None
        try:
            if not words:
                display(_widget_for(command))
                return
            from .parser import run  # on first use, so %load_ext stays instant
            from .secrets import TYPED_IN_CELL

            typed_in = TYPED_IN_CELL.set(_cell_being_run(ipython))
            try:
                output, as_json = run([*prefix, *words])
            finally:
                TYPED_IN_CELL.reset(typed_in)
        except HelpShown:
            return
        except UsageError as error:
            where = f"%{error.command}" if error.command else f"%{WHOLE_GRAMMAR}"
            raise IPythonUsageError(
                in_notebook_words(f"{where}: {error} (see `{where} --help`)")
            ) from None
        except StackmagicError as error:
            if isinstance(error, SecretInCell):
                _forget_typed(ipython, error.value)
            if isinstance(error, RunFailed) and error.output is not None:
                display(error.output)  # the steps and how each ended, then why the run failed
            raise IPythonUsageError(in_notebook_words(str(error))) from None
        except OSError as error:
            raise IPythonUsageError(describe_os_error(error)) from None
        if output.namespace:
            ipython.push(output.namespace)
        if as_json:
            print(output.to_json())
        else:
            display(output)
            for figure in getattr(output, "figures", ()):  # a comparison's chart, under its table
                display(figure)

    magic.__name__ = command.replace("-", "_")
    magic.__doc__ = (
        f"%{command} ACTION ...: the `stackmagic {command}` command in a notebook "
        f"(`%{command} --help` lists the actions; with no arguments: a widget)."
    )
    return magic


#: IPython's variables holding earlier inputs: ``_i``, ``_ii``, ``_iii``, ``_i7``.
_INPUT_VARIABLE = re.compile(r"_i(i{0,2}|\d+)")


def _cell_being_run(ipython: Any) -> str:
    """The source of the cell this magic runs in: IPython records a cell before running it."""
    history = getattr(ipython, "history_manager", None)
    return history.input_hist_raw[-1] if history is not None and history.input_hist_raw else ""


def _forget_typed(ipython: Any, value: str) -> None:
    """Scrub a secret typed into a cell from this kernel's history: its lists, the ``_i``
    variables and its database (where IPython may have written the cell already)."""
    history = ipython.history_manager

    def scrub(text: str) -> str:
        return text.replace(value, MASK)

    for inputs in (history.input_hist_raw, history.input_hist_parsed):
        inputs[:] = [scrub(text) for text in inputs]
    ipython.user_ns.update(
        {
            name: scrub(text)
            for name, text in ipython.user_ns.items()
            if _INPUT_VARIABLE.fullmatch(name) and isinstance(text, str)
        }
    )
    for attribute in ("_i", "_ii", "_iii", "_i00"):
        setattr(history, attribute, scrub(getattr(history, attribute)))
    if not history.enabled:
        return
    with history.db_input_cache_lock, history.db:  # the saving thread writes under this lock
        history.db_input_cache = [
            (line, scrub(source), scrub(raw)) for line, source, raw in history.db_input_cache
        ]
        history.db.execute(
            "UPDATE history SET source = replace(source, ?1, ?2), "
            "source_raw = replace(source_raw, ?1, ?2) WHERE session = ?3",
            (value, MASK, history.session_number),
        )


def _widget_for(command: str) -> Any:
    from . import widgets

    if command in (STACK, WHOLE_GRAMMAR):
        return widgets.StackSwitcher()
    if command in (PIPELINE, GC):  # the notebook's pipeline; gc's default, litter only
        from .parser import run

        return run([PIPELINE, "show"] if command == PIPELINE else [GC])[0]
    return widgets.RegistrationForm(ComponentType(command))
