"""Cancelling runs: from another process, through the metadata store, on every orchestrator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, ended, started_run, wait_for
from fake_gce import FakeGce
from fake_kfp import FakeKfp
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the jp_* fixtures
from test_gcp_vm import gcp_stack  # noqa: F401 - a stack on a fake Compute Engine
from test_kubeflow import (  # noqa: F401 - stacks on a fake KFP, and on kfp.local
    fake_kfp,
    kubeflow_notebook,
    local_kubeflow,
)
from test_magics import shell  # noqa: F401 - an in-process IPython
from test_metadata_store import complete, metadata, new_run, store_url  # noqa: F401 - backends
from test_server import api, authorizer, jp_server_config  # noqa: F401 - the server's fixtures
from test_vm import AWS, aws, run_id_of, vm_stack  # noqa: F401 - a stack on moto's EC2
from vm_sandbox import start_startup_script

from notebooks import write_notebook
from stackmagic.runtime.cache import NO_CACHE
from stackmagic.stores.metadata import AlreadyEnded, MetadataStore


def slow_notebook(folder: Path, pid_file: Path | None = None) -> Path:
    """Three steps, the middle one sleeping 60 s; it writes its kernel's pid to ``pid_file``
    (default: wait.pid beside the notebook, where local steps run)."""
    where = repr(str(pid_file)) if pid_file else "'wait.pid'"
    return write_notebook(
        folder / "slow.ipynb",
        "%%step load\nrows = [1, 2, 3]",
        f"%%step wait\nimport os, time\nopen({where}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\ntotal = sum(rows)",
        "%%step report\nprint(total)",
    )


def kernels_in(folder: Path) -> list[int]:
    """Processes other than this one working in ``folder``: step kernels, the warm template."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc, "cwd").resolve() == folder.resolve():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [pid for pid in found if pid != os.getpid()]


def described(terminal: Callable[..., Result], run_id: str) -> dict:
    shown = terminal("pipeline", "describe", run_id, "--json")
    assert shown.code == 0, shown.err
    return json.loads(shown.out)


def assert_cancelled_in_wait(run: dict[str, Any]) -> None:
    """The slow notebook's run, as recorded once cancelled while its middle step slept."""
    assert run["status"] == "cancelled"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("load", "completed"),
        ("wait", "cancelled"),
        ("report", "skipped"),
    ]


# --- the metadata store: SQLite, MariaDB and PostgreSQL --------------------------------------


def test_a_cancel_request_reaches_the_process_driving_the_run(
    metadata: MetadataStore, store_url: str
) -> None:
    new_run(metadata, "busy", steps=("load", "fit", "report"))
    complete(metadata, "busy", "load")
    metadata.step_started("busy", "fit", code_key="code", attempt=1)
    heard = threading.Event()
    with metadata.watching_for_cancel("busy", heard.set):
        elsewhere = MetadataStore(store_url)  # another process's connection
        assert elsewhere.request_cancel("busy") is True, "a process here drives it"
        elsewhere.close()
        assert heard.wait(timeout=10), "the driver never heard of the request"
    metadata.step_failed("busy", "fit", error="interrupted", notebook_uri=None, inputs={})
    metadata.run_cancelled("busy", interrupted=["fit"])
    metadata.run_finished("busy", error="the run stopped before its steps ended")

    run = metadata.run("busy")
    assert run.status == "cancelled" and run.error is None and run.ended_at is not None
    assert [(s.name, s.status, s.error) for s in run.steps] == [
        ("load", "completed", None),
        ("fit", "cancelled", None),
        ("report", "skipped", "the run was cancelled"),
    ]
    with pytest.raises(AlreadyEnded, match="^run busy already cancelled; nothing to cancel$"):
        metadata.request_cancel("busy")


def test_a_run_asked_to_stop_that_breaks_off_is_cancelled_one_that_ended_is_not(
    metadata: MetadataStore,
) -> None:
    for run_id in ("broke-off", "done"):
        new_run(metadata, run_id, steps=("load",))
        metadata.request_cancel(run_id)
    metadata.step_started("broke-off", "load", code_key="code", attempt=1)
    metadata.run_finished("broke-off", error="interrupted")  # its driver never said why
    complete(metadata, "done", "load")
    metadata.run_finished("done")  # it ended before it could be stopped
    assert [(s.name, s.status) for s in metadata.run("broke-off").steps] == [("load", "cancelled")]
    assert metadata.run("broke-off").status == "cancelled"
    assert metadata.run("done").status == "completed"
    with pytest.raises(AlreadyEnded, match="^run done already completed; nothing to cancel$"):
        metadata.request_cancel("done")


def test_a_run_driven_elsewhere_is_for_its_orchestrator_to_stop(metadata: MetadataStore) -> None:
    metadata.create_run(
        run_id="on-kfp",
        pipeline="train",
        notebook="train.ipynb",
        stack_name="team",
        stack={"orchestrator": {"flavor": "kubeflow"}},
        bundle_uri="s3://b/_bundles/h.zip",
        bundle_hash="h" * 64,
        options={},
        parameters={},
        overridden=[],
        steps=["load"],
        driven_here=False,
    )
    assert metadata.request_cancel("on-kfp") is False
    assert metadata.cancel_requested("on-kfp")


# --- local runs, from the terminal -----------------------------------------------------------


def test_a_local_run_is_cancelled_from_another_process(initialised: Path, terminal) -> None:
    notebook = slow_notebook(initialised)
    with started_run(notebook) as driver:
        wait_for(lambda: (initialised / "wait.pid").exists(), what="the step to start")
        kernel = int((initialised / "wait.pid").read_text())
        run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]

        cancelled = terminal("pipeline", "cancel", run_id)

        assert cancelled.code == 0, cancelled.err
        assert cancelled.out.strip() == f"Cancelled run {run_id} of slow; stopped wait"
        assert driver.wait(timeout=30) == 1, "the driving process ends, the run failed to finish"
        assert driver.stderr is not None
        said = driver.stderr.read()
        assert "  wait: cancelled\n" in said, "the progress ends the step as it is recorded"
        assert "Kernel died" not in said, "the kernels stopped as asked: no news"
        assert f"stackmagic: error: run {run_id} of slow was cancelled" in said
    run = described(terminal, run_id)
    assert run["status"] == "cancelled"
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["load"]["status"] == "completed"
    assert steps["wait"]["status"] == "cancelled"
    assert steps["report"]["status"] == "skipped"
    assert steps["report"]["error"] == "the run was cancelled"
    assert ended(kernel), "the step's kernel outlived the cancel"
    wait_for(lambda: not kernels_in(initialised), timeout=10, what="every kernel ending")


def test_a_notebooks_run_is_cancelled_with_the_magic_of_another(
    shell: Any, initialised: Path, terminal
) -> None:
    """The kernel that runs ``%pipeline run`` drives the run; another kernel cancels it."""
    notebook = slow_notebook(initialised)
    cancelled: list[Result] = []

    def cancel_once_running() -> None:
        wait_for(lambda: (initialised / "wait.pid").exists(), what="the step to start")
        another_kernel = [
            sys.executable,
            "-c",
            "from IPython.core.interactiveshell import InteractiveShell as S\n"
            "ip = S.instance(); ip.run_line_magic('load_ext', 'stackmagic')\n"
            "ip.run_line_magic('pipeline', 'cancel latest')",
        ]
        done = subprocess.run(another_kernel, cwd=initialised, capture_output=True, text=True)
        cancelled.append(Result(done.returncode, done.stdout, done.stderr))

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    with capture_output() as shown, pytest.raises(UsageError) as stopped:
        shell.run_line_magic("pipeline", f"run {notebook} --progress none")
    canceller.join()
    run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]
    assert str(stopped.value) == f"run {run_id} of slow was cancelled"
    [steps] = [output.data["text/plain"] for output in shown.outputs]
    assert re.search(r"\n +wait +cancelled ", steps), "the steps are shown, as for a failed run"
    [said] = cancelled
    assert said.code == 0 and said.out.strip() == f"Cancelled run {run_id} of slow; stopped wait"
    assert described(terminal, run_id)["status"] == "cancelled"
    wait_for(lambda: not kernels_in(initialised), timeout=10, what="every kernel ending")


def test_a_finished_run_has_nothing_to_cancel(initialised: Path, terminal) -> None:
    notebook = write_notebook(initialised / "quick.ipynb", "%%step one\nx = 1")
    assert terminal("pipeline", "run", str(notebook)).code == 0
    run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]

    refused = terminal("pipeline", "cancel", run_id)

    assert refused.code == 1
    assert refused.err == f"stackmagic: error: run {run_id} already completed; nothing to cancel\n"
    assert described(terminal, run_id)["status"] == "completed"


# --- through the REST API, on a real Jupyter server ---------------------------------------


def test_a_run_started_through_the_api_is_cancelled_through_it(api: Any, jp_root_dir: Path) -> None:
    slow_notebook(jp_root_dir)
    status, started = api("POST", "runs", body={"notebook": "slow.ipynb"})
    assert status == 202, started
    wait_for(lambda: (jp_root_dir / "wait.pid").exists(), what="the step to start")
    kernel = int((jp_root_dir / "wait.pid").read_text())

    status, answer = api("POST", "runs", started["id"], "cancel")

    assert status == 202 and answer == {"id": started["id"], "status": "cancelling"}, answer
    run = wait_for(
        lambda: (found := api("GET", "runs", started["id"])[1])["status"] != "running" and found,
        what="the run to stop",
    )
    assert_cancelled_in_wait(run)
    assert ended(kernel), "the step's kernel outlived the cancel"
    wait_for(lambda: not kernels_in(jp_root_dir), timeout=10, what="every kernel ending")

    status, again = api("POST", "runs", started["id"], "cancel")
    assert status == 409
    assert again["message"] == f"run {started['id']} already cancelled; nothing to cancel"
    status, unknown = api("POST", "runs", "20990101-000000-abcdef", "cancel")
    assert status == 404 and "names no run" in unknown["message"]


def finished(api: Any, run_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (found := api("GET", "runs", run_id)[1])["status"] != "running" and found,
        what=f"run {run_id} to end",
    )


def test_a_run_started_through_the_api_takes_run_options(api: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir / "two.ipynb", "%%step a\nx = 1", "%%step b\ny = x + 1")
    first = api("POST", "runs", body={"notebook": "two.ipynb"})[1]
    assert finished(api, first["id"])["status"] == "completed"

    for options, recorded, steps in (
        (
            {"only": ["b"]},
            {"only": "b"},
            [("a", "cached", None), ("b", "completed", "forced by --only")],
        ),
        (
            {"from_step": "b"},
            {"from": "b"},
            [("a", "cached", None), ("b", "completed", "forced by --from")],
        ),
        (
            {"no_cache": True},
            {"no_cache": True},
            [("a", "completed", NO_CACHE), ("b", "completed", NO_CACHE)],
        ),
    ):
        status, started = api("POST", "runs", body={"notebook": "two.ipynb", **options})
        assert status == 202, started
        run = finished(api, started["id"])
        assert {name: value for name, value in run["options"].items() if value} == recorded
        assert [(s["name"], s["status"], s["reason"]) for s in run["steps"]] == steps, options


@pytest.mark.parametrize(
    "options, message",
    [
        ({"no_cache": "yes"}, "'no_cache' must be true or false"),
        ({"only": "b"}, "'only' must be a list of step names"),
        ({"only": ["a", 2]}, "'only' must be a list of step names"),
        ({"only": ["a", "b"]}, "'only' names 2 steps; a run takes one (--only STEP)"),
        ({"from_step": 3}, "'from_step' must be a step name"),
    ],
)
def test_run_options_of_the_wrong_type_are_a_400(
    api: Any, jp_root_dir: Path, options: dict[str, Any], message: str
) -> None:
    write_notebook(jp_root_dir / "two.ipynb", "%%step a\nx = 1", "%%step b\ny = x + 1")
    status, answer = api("POST", "runs", body={"notebook": "two.ipynb", **options})
    assert status == 400 and answer["message"].startswith(message), answer
    assert "\n" not in answer["message"]
    assert api("GET", "runs")[1] == [], "nothing was recorded"


def test_a_run_that_cannot_start_says_why_as_the_terminal_does(
    api: Any, jp_root_dir: Path, terminal
) -> None:
    name = "a-notebook-whose-name-is-long-enough-to-make-its-error-longer-than-any-toast-" * 3
    write_notebook(jp_root_dir / f"{name}.ipynb", "%%step a\nx = (1,", "%%step b\ny = x")
    write_notebook(jp_root_dir / "two.ipynb", "%%step a\nx = 1", "%%step b\ny = x + 1")
    for body, words in (
        ({"notebook": f"{name}.ipynb"}, [f"{name}.ipynb"]),
        ({"notebook": "two.ipynb", "only": ["c"]}, ["two.ipynb", "--only", "c"]),
        ({"notebook": "two.ipynb", "from_step": "c"}, ["two.ipynb", "--from", "c"]),
        ({"notebook": "two.ipynb", "parameters": {"lr": 1}}, ["two.ipynb", "-p", "lr", "1"]),
    ):
        status, answer = api("POST", "runs", body=body)
        said = terminal("pipeline", "run", *words, cwd=jp_root_dir)
        assert status == 400, answer
        assert said.code == 2 and said.err == f"stackmagic: error: {answer['message']}\n"
    status, answer = api("POST", "runs", body={"notebook": f"{name}.ipynb"})
    assert answer["message"].startswith(f"cell 1 of {name}.ipynb (step 'a') has a syntax error")
    assert api("GET", "runs")[1] == [], "nothing was recorded"


# --- runs that go on elsewhere: stopped through their orchestrator -------------------------


def step_status(terminal: Callable[..., Result], run_id: str, step: str) -> str:
    return next(s["status"] for s in described(terminal, run_id)["steps"] if s["name"] == step)


@pytest.mark.kernel
def test_a_kfp_local_run_is_stopped_by_the_process_driving_it(
    local_kubeflow: Path, terminal, tmp_path: Path
) -> None:
    pid_file = tmp_path / "wait.pid"
    with started_run(slow_notebook(local_kubeflow, pid_file)) as driver:
        wait_for(pid_file.exists, what="the step to start in kfp.local")
        kernel = int(pid_file.read_text())
        run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]

        cancelled = terminal("pipeline", "cancel", run_id)

        assert cancelled.code == 0, cancelled.err
        assert cancelled.out.strip() == f"Cancelled run {run_id} of slow; stopped wait"
        assert driver.wait(timeout=30) == 1
    wait_for(lambda: ended(kernel), timeout=10, what="the step's kernel to end")
    assert_cancelled_in_wait(described(terminal, run_id))


@pytest.mark.kernel
def test_a_kubeflow_run_is_terminated_through_the_kfp_api(
    fake_kfp: FakeKfp, kubeflow_notebook: Path, terminal, tmp_path: Path
) -> None:
    pid_file = tmp_path / "wait.pid"
    notebook = slow_notebook(kubeflow_notebook.parent, pid_file)
    with started_run(notebook, "--wait") as follower:
        wait_for(pid_file.exists, what="the step to start in its pod")
        kernel = int(pid_file.read_text())
        [kfp_run] = fake_kfp.runs.values()
        run_id = kfp_run["runtime_config"]["parameters"]["stackmagic_run"]
        assert step_status(terminal, run_id, "wait") == "running"

        cancelled = terminal("pipeline", "cancel", run_id[:12])

        assert cancelled.code == 0, cancelled.err
        assert cancelled.out.strip() == f"Cancelled run {run_id} of slow; stopped wait"
        assert follower.wait(timeout=60) == 1
        assert follower.stderr is not None
        assert f"stackmagic: error: run {run_id} of slow was cancelled" in follower.stderr.read()
    terminated = [r for r in fake_kfp.requests if r.path.endswith(":terminate")]
    assert [(r.method, r.path) for r in terminated] == [
        ("POST", f"/apis/v2beta1/runs/{kfp_run['run_id']}:terminate")
    ]
    wait_for(lambda: kfp_run["state"] == "CANCELED", what="KFP to end the run")
    wait_for(lambda: ended(kernel), timeout=10, what="the step's kernel to end")
    assert_cancelled_in_wait(described(terminal, run_id))
    again = terminal("pipeline", "cancel", run_id)
    assert (again.code, again.err) == (
        1,
        f"stackmagic: error: run {run_id} already cancelled; nothing to cancel\n",
    )


def test_a_gcp_vm_run_is_cancelled_by_deleting_its_vm(
    gcp_stack: Callable[..., Any], gce: FakeGce, project: Path, terminal, tmp_path: Path
) -> None:
    gcp_stack()
    pid_file = tmp_path / "wait.pid"
    notebook = slow_notebook(project, pid_file)
    with started_run(notebook, "--wait") as follower:
        [(name, instance)] = wait_for(lambda: list(gce.instances.items()), what="the VM")
        [script] = [
            i["value"] for i in instance["metadata"]["items"] if i["key"] == "startup-script"
        ]
        vm = start_startup_script(script, tmp_path / "vm")
        try:
            wait_for(pid_file.exists, timeout=120, what="the step to start on the VM")
            kernel = int(pid_file.read_text())
            run_id = instance["labels"]["stackmagic-run"]

            cancelled = terminal("pipeline", "cancel", run_id)

            assert cancelled.code == 0, cancelled.err
            assert cancelled.out.strip() == f"Cancelled run {run_id} of slow; stopped wait"
            assert gce.deleted[0] == name, "the VM was deleted"
            assert follower.wait(timeout=60) == 1
            assert follower.stderr is not None
            assert f"run {run_id} of slow was cancelled" in follower.stderr.read()
            vm.wait(timeout=60)  # the run on the VM saw the request: it stopped its steps
        finally:
            if vm.poll() is None:
                os.killpg(vm.pid, signal.SIGKILL)
    wait_for(lambda: ended(kernel), timeout=10, what="the step's kernel to end")
    assert_cancelled_in_wait(described(terminal, run_id))


def test_an_aws_vm_run_is_cancelled_by_terminating_its_instance(
    vm_stack: Callable[..., Any], aws: AWS, project: Path, terminal
) -> None:
    vm_stack()
    run_id = run_id_of(terminal("pipeline", "run", str(slow_notebook(project)), "--json"))
    [instance] = aws.instances(run_id)
    assert instance["State"]["Name"] in ("pending", "running")

    cancelled = terminal("pipeline", "cancel", run_id, "--json")

    assert cancelled.code == 0, cancelled.err
    assert json.loads(cancelled.out) == {"id": run_id, "status": "cancelled"}
    [instance] = aws.instances(run_id)
    assert instance["State"]["Name"] in ("shutting-down", "terminated")
    run = described(terminal, run_id)
    assert run["status"] == "cancelled"
    assert {(s["status"], s["error"]) for s in run["steps"]} == {
        ("skipped", "the run was cancelled")
    }, "no step had started"
