"""A step run as a task of its own (a Kubeflow pod, ``python -m stackmagic.runtime step``)
wastes no time: its kernel boots while papermill loads, and a cached step starts none.

The task runs in a fresh process, which notes when papermill starts loading
and whether it had finished when the kernel process was started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from notebooks import write_notebook

#: ``python -m stackmagic.runtime ARGS``, noting the kernels it starts and papermill's loading.
_PROBE = """
import json, runpy, subprocess, sys
events = []
start = subprocess.Popen.__init__
def recording(self, args, *rest, **options):
    if "ipykernel" in str(args):
        papermill = sys.modules.get("papermill")
        loaded = papermill is not None and not papermill.__spec__._initializing
        events.append(f"kernel started {'after' if loaded else 'before'} papermill loaded")
    start(self, args, *rest, **options)
subprocess.Popen.__init__ = recording
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "papermill":
            events.append("papermill loading")
        return None
sys.meta_path.insert(0, Watch())
report, sys.argv = sys.argv[1], ["stackmagic.runtime", *sys.argv[2:]]
try:
    runpy.run_module("stackmagic.runtime", run_name="__main__", alter_sys=True)
finally:
    with open(report, "w") as file:
        json.dump(events, file)
"""


def run_task(folder: Path, *args: str, env: dict[str, str]) -> list[str]:
    """What happened as ``python -m stackmagic.runtime ARGS`` ran to success."""
    report = folder.parent / "events.json"
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(report.read_text())


def test_a_task_boots_its_kernel_while_papermill_loads_and_a_cached_one_starts_none(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "flaky.ipynb",
        "import os",
        "%%step fetch\nassert os.environ.get('SERVICE_UP') == '1', 'the service is down'\nrows = [1, 2]",
    )
    runs = []
    for _ in range(2):  # two runs whose step failed: the service was down
        failed = terminal("pipeline", "run", str(notebook), "--json")
        assert failed.code == 1
        runs.append(json.loads(failed.out)["id"])

    # the step runs: its kernel boots while papermill takes its second of loading
    ran = run_task(initialised, "step", runs[0], "fetch", env={"SERVICE_UP": "1"})
    assert sorted(ran) == ["kernel started before papermill loaded", "papermill loading"]
    # the step's result from the first run serves the second: nothing starts, nothing loads
    assert run_task(initialised, "step", runs[1], "fetch", env={"SERVICE_UP": "1"}) == []
    described = json.loads(terminal("pipeline", "describe", runs[1], "--json").out)
    assert described["steps"][0]["status"] == "cached"
