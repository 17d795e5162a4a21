"""A run whose steps are all cached, and the commands that only look, load no execution machinery.

Importing papermill (with the cloud file systems it reads notebooks from),
nbclient or nbformat's schema validator costs seconds before anything happens:
a cached re-run and ``pipeline show/runs/describe`` must answer without them.
Each command runs in a fresh process, which reports the modules it loaded and
the processes it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from notebooks import write_notebook
from stackmagic.notebook.exporter import export_bundle
from stackmagic.notebook.spec import load_pipeline
from stackmagic.registry import Registry

#: What executes a step notebook, or validates one: needed only when a step runs.
EXECUTION = (
    "papermill",
    "nbclient",
    "nbformat.validator",
    "jsonschema",
    "fastjsonschema",
    "rfc3987_syntax",
)
#: What starts and talks to kernels.
KERNELS = ("jupyter_client", "ipykernel")

#: Runs the CLI in this process, then writes what it loaded and started to argv[1].
_PROBE = """
import json, subprocess, sys
started = []
start = subprocess.Popen.__init__
def recording(self, args, *rest, **options):
    started.append(str(args))
    start(self, args, *rest, **options)
subprocess.Popen.__init__ = recording
from stackmagic.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules), "started": started}, report)
"""


@dataclass
class Probe:
    output: str
    modules: list[str]
    started: list[str]

    def loaded(self, packages: tuple[str, ...]) -> list[str]:
        return [m for m in self.modules if any(m == p or m.startswith(p + ".") for p in packages)]


@dataclass
class Project:
    folder: Path
    env: dict[str, str]

    def probe(self, *args: str) -> Probe:
        """Run ``stackmagic ARGS`` in a fresh process."""
        report = self.folder.parent / "probe.json"  # not beside the notebook: it would be a source
        completed = subprocess.run(
            [sys.executable, "-c", _PROBE, str(report), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = json.loads(report.read_text())
        assert found["code"] == 0, completed.stderr
        return Probe(completed.stdout, found["modules"], found["started"])


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose notebook ran, then ran again with every step from the cache."""
    root = tmp_path_factory.mktemp("light")
    env = {**os.environ, "STACKMAGIC_HOME": str(root / "user-home")}
    env.pop("STACKMAGIC_STACK", None)
    project = Project(root / "project", env)
    project.folder.mkdir()
    write_notebook(
        project.folder / "chain.ipynb",
        "%load_ext stackmagic",
        "%%step make\nx = 1",
        "%%step use\ny = x + 1",
    )
    assert project.probe("init").output
    first = project.probe("pipeline", "run", "--json", "chain.ipynb")
    assert [s["status"] for s in json.loads(first.output)["steps"]] == ["completed"] * 2
    assert first.loaded(EXECUTION) and first.started, "the probe sees a run that executes steps"
    return project


@pytest.fixture(scope="module")
def cached(ran: Project) -> Probe:
    again = ran.probe("pipeline", "run", "--json", "chain.ipynb")
    assert [s["status"] for s in json.loads(again.output)["steps"]] == ["cached"] * 2
    return again


@pytest.mark.kernel
def test_a_run_served_from_the_cache_loads_no_execution_machinery_and_starts_nothing(
    cached: Probe,
) -> None:
    assert cached.loaded(EXECUTION) == []
    assert cached.started == [], "a run served from the cache started a process (a kernel?)"


@pytest.mark.kernel
def test_a_run_served_from_the_cache_loads_no_kernel_machinery(cached: Probe) -> None:
    assert cached.loaded(KERNELS) == []


@pytest.mark.kernel
@pytest.mark.parametrize(
    "command",
    [
        ["pipeline", "show", "chain.ipynb"],
        ["pipeline", "show", "chain.ipynb", "--cache"],
        ["pipeline", "runs"],
        ["pipeline", "describe", "RUN"],
    ],
    ids=" ".join,
)
def test_commands_that_only_look_load_no_execution_machinery(
    ran: Project, cached: Probe, command: list[str]
) -> None:
    run = json.loads(cached.output)["id"]
    looked = ran.probe(*[run if word == "RUN" else word for word in command])
    assert looked.output
    assert looked.loaded(EXECUTION + KERNELS) == []
    assert looked.started == []


def test_step_notebooks_are_written_byte_for_byte_as_nbformat_writes_them(
    project: Path,
) -> None:
    """Bundle hashes cover these bytes: a different writer must not change one of them."""
    Registry.init(project)
    (project / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    notebook = write_notebook(
        project / "mixed.ipynb",
        "import math\nfrom helpers import double\n%load_ext stackmagic",
        "# md: Notes with ünïcode — and a tab\there",
        "def shout(text):\n    return text.upper() + ' ¡olé! 🎉'",
        # \r\n and U+2028 end lines for str.splitlines, as nbformat splits sources
        "%%step load\nimport statistics\nraw = [double(i) for i in range(n)]\r\n"
        "label = 'naïve\u2028'\ndef spread(v):\n    return statistics.pstdev(v)\n\n",
        "%%step square --after load\nsquares = [math.sqrt(v) ** 2 for v in raw], spread(raw)",
        "%%step report\nsummary = {shout(label): sum(squares)}  # no newline at the end",
        parameters="n = 3\nname = 'café'",
    )
    bundle = export_bundle(load_pipeline(notebook), project.parent / "bundle")
    for step in bundle.steps:
        text = bundle.step_notebook(step).read_text(encoding="utf-8")
        assert text == nbformat.writes(nbformat.reads(text, as_version=4)), step


_DEFERRED = """
import json, sys
from stackmagic.deferred_imports import defer_slow_imports
defer_slow_imports()
import papermill, jsonschema
loaded_by_papermill = type(sys.modules["rfc3987_syntax"]).__name__ == "module"
checker = jsonschema.FormatChecker()
answers = [checker.conforms(value, kind) for value, kind in json.loads(sys.argv[1])]
print(json.dumps({"loaded_by_papermill": loaded_by_papermill, "answers": answers}))
"""


def test_papermill_loads_without_building_the_iri_parsers_which_still_answer_alike() -> None:
    cases = [
        ["http://exämple.org/päth?q=1#frag", "iri"],
        ["not an iri", "iri"],
        ["../relative/päth", "iri-reference"],
        ["http://[::1", "iri"],
    ]

    def run(code: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(cases)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

    deferred = run(_DEFERRED)
    plain = run(_DEFERRED.replace("defer_slow_imports()", "pass"))
    assert plain["loaded_by_papermill"], (
        "papermill no longer loads rfc3987_syntax: drop the stand-in"
    )
    assert not deferred["loaded_by_papermill"]
    assert deferred["answers"] == plain["answers"] == [True, False, True, False]
