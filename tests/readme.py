"""The README's code, read as a newcomer reads it: sections, fenced blocks, commands.

Commands are taken from the README itself, so a test that walks a section runs
whatever the section says today. A walk may point the README's example hosts
at this machine's servers, word for word (``--host=db.internal`` becomes
``--host=127.0.0.1``); a substitution whose word is no longer in the section
fails the walk, so none goes stale.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conftest import BIN

from stackmagic.magics import shell_words

README = Path(__file__).resolve().parents[1] / "README.md"
#: What a command's comment says it prints: `stackmagic stack get  # prints: gcp`.
PRINTS = re.compile(r"#\s*prints:\s*(?P<shown>.+)$")


@dataclass(frozen=True)
class Block:
    section: str  # the "## " heading above it ("" before the first one)
    language: str
    text: str


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    prints: str | None = None  # what its comment says it prints

    def __str__(self) -> str:
        return shlex.join(self.words)


def blocks(section: str | None = None, language: str | None = None) -> list[Block]:
    """The README's fenced blocks, in order, optionally of one section and language."""
    found, heading, lines = [], "", README.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("## "):
            heading = line[3:].strip()
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence:
            indent, body = len(fence.group(1)), []
            number += 1
            while not lines[number].strip().startswith("```"):
                body.append(lines[number][indent:])
                number += 1
            found.append(Block(heading, fence.group(2), "\n".join(body) + "\n"))
        number += 1
    return [
        block
        for block in found
        if (section is None or block.section == section)
        and (language is None or block.language == language)
    ]


def commands(script: str) -> list[Command]:
    """A shell block's commands: continuations joined, comments dropped, ``&&`` chains split."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        shown = PRINTS.search(line)
        words = shell_words(line)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            found.append(
                Command(tuple(words[:end]), shown.group("shown").strip() if shown else None)
            )
            words = words[end + 1 :]
    return found


def section_commands(section: str) -> list[Command]:
    return [command for block in blocks(section, "bash") for command in commands(block.text)]


def table_examples(section: str) -> list[Command]:
    """The "example" column of a section's command tables."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    found = []
    for row in text[start : end if end > 0 else None].splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        if row.startswith("|") and len(cells) == 3 and cells[2].startswith("`stackmagic "):
            found.append(Command(tuple(shlex.split(cells[2].strip("`")))))
    return found


def shown_output(section: str, command: str) -> str:
    """The output a ```text block of the section shows under ``$ command``."""
    for block in blocks(section, "text"):
        first, _, shown = block.text.partition("\n")
        if first == f"$ {command}":
            return shown
    raise AssertionError(f"the README's {section!r} shows no output of `{command}`")


def matches_shown(output: str, shown: str) -> bool:
    """Whether output is what the README shows, where a line ``  ...`` stands for any lines."""
    pattern = "".join(
        r"(?:.*\n)*?" if line.strip() == "..." else re.escape(line) + r"\n"
        for line in shown.splitlines()
    )
    return re.fullmatch(pattern, output.rstrip("\n") + "\n") is not None


@dataclass
class Walk:
    """Runs README commands in one project, as a user would type them, and keeps what they said.

    ``stand_ins`` carry out other programs' commands (``kubectl``, ``pip``) in a way
    this machine can, by program name; each says in its docstring what it stands for.
    """

    project: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    substitutions: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=dict
    )  # word -> words
    answers: Mapping[str, str] = field(default_factory=dict)  # "--password" -> what is typed at "-"
    stand_ins: Mapping[str, Callable[[Command], None]] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)  # each command's output, in order
    commands_run: list[str] = field(default_factory=list)
    substituted: set[str] = field(default_factory=set)

    def run(self, command: Command, expect_code: int = 0) -> str:
        if command.words[0] in self.stand_ins:
            self.stand_ins[command.words[0]](command)
            return ""
        self.substituted.update(word for word in command.words if word in self.substitutions)
        words = [said for word in command.words for said in self._substituted(word)]
        typed = "".join(f"{self.answers[word[:-2]]}\n" for word in words if word.endswith("=-"))
        environment = {
            **os.environ,
            **self.environment,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        # a session of its own: no terminal to open, so a "-" secret is read from stdin as typed
        done = subprocess.run(
            words,
            cwd=self.project,
            env=environment,
            input=typed,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )
        self.said.append(done.stdout + done.stderr)
        self.commands_run.append(str(command))
        assert done.returncode == expect_code, (
            f"`{command}` exited {done.returncode}: {done.stderr}"
        )
        if command.prints is not None:
            assert done.stdout.strip() == command.prints, f"`{command}` printed {done.stdout!r}"
        return done.stdout

    def _substituted(self, word: str) -> tuple[str, ...]:
        replacement = self.substitutions.get(word, word)
        return (replacement,) if isinstance(replacement, str) else replacement

    def said_by(self, beginning: str) -> str:
        """What the last command run that begins so printed."""
        for command, said in zip(reversed(self.commands_run), reversed(self.said)):
            if command.startswith(beginning):
                return said
        raise AssertionError(f"no command beginning {beginning!r} was run")

    def run_all(self, found: Iterable[Command]) -> None:
        for command in found:
            self.run(command)

    def assert_no_stale_substitution(self) -> None:
        stale = set(self.substitutions) - self.substituted
        assert not stale, f"the README no longer says {sorted(stale)}: update the walk"
