"""A real IPython kernel and a terminal share one registry, both ways."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CANARY, REFERENCE_SEQUENCE
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.kernel


class Kernel:
    def __init__(self, client) -> None:
        self.client = client

    def run(self, code: str) -> tuple[str, str, list[dict]]:
        """Execute a cell; returns its stdout, its stderr and errors, and its display data."""
        streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
        displays = []

        def collect(message: dict) -> None:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                streams[content["name"]].append(content["text"])
            elif kind in ("display_data", "execute_result"):
                displays.append(content["data"])
            elif kind == "error":
                streams["stderr"].append("\n".join(content["traceback"]))

        self.client.execute_interactive(code, output_hook=collect, timeout=60)
        return "".join(streams["stdout"]), "".join(streams["stderr"]), displays


@contextmanager
def started_kernel(cwd: Path, **env: str) -> Iterator[Kernel]:
    manager, client = start_new_kernel(
        kernel_name="python3", cwd=str(cwd), env={**os.environ, **env}
    )
    try:
        yield Kernel(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(project: Path) -> Iterator[Kernel]:
    with started_kernel(project) as started:
        yield started


def test_magics_in_a_kernel_and_the_terminal_see_the_same_stacks(project: Path, terminal) -> None:
    assert terminal("init").code == 0
    with started_kernel(project, SQL_PASSWORD=CANARY) as kernel:
        _, error, _ = kernel.run(
            "%load_ext stackmagic\nimport os\npassword = os.environ['SQL_PASSWORD']"
        )
        assert error == ""
        for words in REFERENCE_SEQUENCE:
            # a notebook refuses a secret written in its cell: the value comes from a variable
            line = " ".join(words[1:]).replace(f"--password={CANARY}", "--password={password}")
            stdout, error, displays = kernel.run(f"%{words[0]} {line}")
            assert error == "", (words, error)
            assert CANARY not in stdout + str(displays)

        # what the kernel set, the terminal sees
        assert terminal("stack", "get").out.strip() == "gcp"

        # what the terminal sets, the kernel sees
        assert terminal("stack", "set", "default").code == 0
        stdout, _, displays = kernel.run("%stack get")
        assert displays[0]["text/plain"] == "default"
        assert terminal("orchestrator", "register", "vm", "--type=aws-vm", "--spot=true").code == 0
        _, _, displays = kernel.run("%orchestrator list")
        assert ">vm<" in displays[0]["text/html"]


def test_a_mistake_in_a_kernel_is_one_usage_error(kernel: Kernel) -> None:
    kernel.run("%load_ext stackmagic")
    _, error, _ = kernel.run("%stack register gcp -m sql -a gcs -o kf")
    assert error.strip().splitlines() == [
        "UsageError: no metadata store named 'sql' (registered: default); register it with "
        "`%metadata-store register sql --type=FLAVOR`"
    ]


def test_pipeline_run_in_a_kernel_runs_its_own_notebook_and_loads_outputs(project: Path) -> None:
    from notebooks import write_notebook

    notebook = write_notebook(
        project / "mine.ipynb",
        "%load_ext stackmagic",
        "%%step make\nnumbers = list(range(4))",
        "%%step total\nresult = sum(numbers) * factor",
        parameters="factor = 10",
    )
    with started_kernel(project, JPY_SESSION_NAME=str(notebook)) as kernel:
        kernel.run("%load_ext stackmagic")
        _, error, displays = kernel.run("%pipeline run -p factor 3")
        assert error == "", error
        assert any("application/vnd.jupyter.widget-view+json" in shown for shown in displays), (
            "a live progress widget"
        )
        summary = displays[-1]["text/html"]
        assert "completed" in summary and "total" in summary
        _, error, _ = kernel.run("%pipeline load latest total.result")
        assert error == "", error
        _, _, displays = kernel.run("result")
        assert displays[-1]["text/plain"] == "18"
        _, error, _ = kernel.run("%pipeline run --only nope")
        assert (
            error.strip()
            .splitlines()[-1]
            .startswith("UsageError: --only nope: the pipeline has no such step")
        )
