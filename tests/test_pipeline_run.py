"""Notebooks run as pipelines on the default local stack: real kernels, real stores."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import zipfile
from datetime import timedelta
from pathlib import Path

import nbformat
import numpy as np
import pytest
from blake3 import blake3
from conftest import on_kernel, started_run

import stackmagic
from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.pipelines import PipelineFailed

pytestmark = pytest.mark.kernel


def demo(folder: Path) -> Path:
    (folder / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    return write_notebook(
        folder / "demo.ipynb",
        "import stackmagic\nfrom helpers import double",
        "%%step load\nraw = [double(i) for i in range(5)]\nlisting = !ls",
        "%%step train --after load\n%time model = sum(raw) * lr",
        "peek = raw[:2]",
        "%%step train\nmodel = model + epochs\nstackmagic.log_metric('loss', 1 / model)",
        "%%step report\nsummary = {'model': model, 'files': sorted(listing)}",
        parameters="lr = 0.5\nepochs = 1",
    )


def test_run_records_steps_outputs_metrics_and_executed_notebooks(initialised: Path) -> None:
    run = stackmagic.run(demo(initialised))
    assert run.status == "completed"
    assert [s.status for s in run.steps.values()] == ["completed"] * 3
    assert run.outputs("load")["raw"] == [0, 2, 4, 6, 8], "a local helper module was imported"
    # a step split over two cells, with %time and a !shell line
    assert run.outputs("train")["model"] == 10.0 + 1
    assert "helpers.py" in run.outputs("load")["listing"], "steps run in the notebook's folder"
    assert run.steps["train"].metrics == [("loss", pytest.approx(1 / 11))]
    assert run.outputs("report")["summary"]["model"] == 11.0, "a final step keeps what it binds"
    executed = nbformat.read(run.steps["train"].notebook_uri, as_version=4)
    sources = [cell.source for cell in executed.cells]
    assert any("model = model + epochs" in source for source in sources)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "stackmagic_context" in injected[0].source


def test_parameter_override_reaches_the_steps_and_is_recorded(initialised: Path, terminal) -> None:
    notebook = demo(initialised)
    result = terminal("pipeline", "run", str(notebook), "-p", "lr", "2", "--json")
    assert result.code == 0, result.err
    described = json.loads(result.out)
    assert described["parameters"] == {"lr": 2, "epochs": 1}
    assert described["overridden"] == ["lr"]
    run_id = described["id"]
    loaded = terminal("pipeline", "load", run_id, "train.model", "--json")
    assert loaded.code == 0, loaded.err
    model_uri = json.loads(loaded.out)["model"]["uri"]
    assert json.loads(Path(model_uri).read_text()) == 20 * 2 + 1
    unknown = terminal("pipeline", "run", str(notebook), "-p", "lrr", "2")
    assert unknown.code == 2 and "no parameter 'lrr' (parameters: epochs, lr)" in unknown.err
    runs_before = terminal("pipeline", "runs", "--json").out
    text = terminal("pipeline", "run", str(notebook), "-p", "lr", "fast")
    assert (text.code, text.err) == (
        2,
        "stackmagic: error: parameter 'lr' is a number in the notebook (lr = 0.5), not the text "
        "'fast'; give a number\n",
    ), "refused at the start, not as a failed step"
    assert terminal("pipeline", "runs", "--json").out == runs_before, "nothing recorded"


def test_a_failing_step_names_the_cell_skips_dependants_and_exits_non_zero(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "broken.ipynb",
        "%%step load\nx = 1",
        "%%step divide\ny = x / 0",
        "%%step report\nprint(y)",
        "%%step side\nz = x + 1",
    )
    result = terminal("pipeline", "run", str(notebook))
    assert result.code == 1
    error = result.err.strip().splitlines()[-1]
    assert (
        "step 'divide' failed: ZeroDivisionError: division by zero (in cell 2 of broken.ipynb)"
        in error
    )
    notebook_path = error.split("executed notebook: ")[1]
    executed = nbformat.read(notebook_path, as_version=4)
    assert any(
        o.get("ename") == "ZeroDivisionError" for c in executed.cells for o in c.get("outputs", [])
    )
    statuses = {line.split()[0]: line.split()[1] for line in result.out.splitlines()[-4:]}
    assert statuses == {
        "load": "completed",
        "divide": "failed",
        "report": "skipped",
        "side": "completed",
    }
    runs = terminal("pipeline", "runs", "--json")
    assert json.loads(runs.out)[0]["status"] == "failed"
    as_json = terminal("pipeline", "run", str(notebook), "--json")
    assert as_json.code == 1
    assert [s["status"] for s in json.loads(as_json.out)["steps"]] == [
        "cached",
        "failed",
        "skipped",
        "cached",
    ]


def branches_notebook(folder: Path) -> Path:
    """Independent branches: one goes on, two fail (one has a chain after it); a step joins all."""
    return write_notebook(
        folder / "branches.ipynb",
        "%%step left\na = 1",
        "%%step right\ne = a + 1",
        "%%step boom\nb = 1 / 0",
        "%%step after\nc = b + 1",
        "%%step last\nd = c + 1",
        "%%step bust\ng = {}['key']",
        "%%step both\nf = d + e + g",
    )


def test_a_skipped_step_names_the_failed_steps_it_depends_on(initialised: Path, terminal) -> None:
    result = terminal("pipeline", "run", str(branches_notebook(initialised)), "--json")
    assert result.code == 1, result.err
    ended = {s["name"]: (s["status"], s["error"]) for s in json.loads(result.out)["steps"]}
    assert ended["right"] == ("completed", None), "the branch without a failure went on"
    assert {name: ended[name] for name in ("after", "last", "both")} == {
        "after": ("skipped", "step 'boom' failed"),
        "last": ("skipped", "step 'boom' failed"),
        "both": ("skipped", "steps 'boom' and 'bust' failed"),
    }


def test_a_40_mb_array_crosses_steps_intact(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "big.ipynb",
        "import numpy as np\nimport hashlib",
        "%%step make\nbig = np.random.default_rng(7).random(5_000_000)",
        "%%step check\ndigest = hashlib.sha256(big.tobytes()).hexdigest()\nsize = big.nbytes",
    )
    run = stackmagic.run(notebook)
    expected = np.random.default_rng(7).random(5_000_000)
    assert run.outputs("make")["big"].nbytes == 40_000_000
    assert (run.outputs("make")["big"] == expected).all()
    stored = run.steps["make"].outputs["big"]
    assert blake3(Path(stored.uri).read_bytes()).hexdigest() == stored.content_hash


def test_a_diamond_runs_its_branches_at_the_same_time(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "diamond.ipynb",
        "import time",
        "%%step start\nseed = 1",
        "%%step left\ntime.sleep(1.5)\na = seed + 1",
        "%%step right\ntime.sleep(1.5)\nb = seed + 2",
        "%%step join\ntotal = a + b",
    )
    run = stackmagic.run(notebook)
    left, right = run.steps["left"], run.steps["right"]
    overlap = min(left.ended_at, right.ended_at) - max(left.started_at, right.started_at)
    assert overlap > timedelta(seconds=0.5), "the two branches ran one after the other"
    assert run.outputs("join")["total"] == 5


def test_unchanged_rerun_is_served_from_cache_and_a_change_reruns_from_there(
    initialised: Path,
) -> None:
    notebook = demo(initialised)
    first = stackmagic.run(notebook)
    second = stackmagic.run(notebook)
    assert [s.status for s in second.steps.values()] == ["cached"] * 3
    assert second.steps["train"].cached_from == f"{first.id}/train"
    assert second.steps["train"].metrics == first.steps["train"].metrics, (
        "a cached step keeps its metrics"
    )
    assert second.outputs("train") == first.outputs("train")

    changed = stackmagic.run(notebook, parameters={"epochs": 2})
    statuses = {name: step.status for name, step in changed.steps.items()}
    assert statuses == {"load": "cached", "train": "completed", "report": "completed"}

    uncached = stackmagic.run(notebook, no_cache=True)
    assert [s.status for s in uncached.steps.values()] == ["completed"] * 3


def test_no_cache_on_one_step(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "fresh.ipynb",
        "%%step a\nx = 1",
        "%%step b --no-cache\ny = x + 1",
    )
    stackmagic.run(notebook)
    again = stackmagic.run(notebook)
    assert {n: s.status for n, s in again.steps.items()} == {"a": "cached", "b": "completed"}


def test_only_and_from_start_from_cached_upstream_outputs(initialised: Path) -> None:
    notebook = demo(initialised)
    with pytest.raises(PipelineFailed, match="step 'load' has no cached result"):
        stackmagic.run(notebook, only="train")
    stackmagic.run(notebook)

    only = stackmagic.run(notebook, only="train")
    assert {n: s.status for n, s in only.steps.items()} == {
        "load": "cached",
        "train": "completed",
        "report": "skipped",
    }
    from_train = stackmagic.run(notebook, from_step="train")
    assert {n: s.status for n, s in from_train.steps.items()} == {
        "load": "cached",
        "train": "completed",
        "report": "completed",
    }
    with pytest.raises(StackmagicError, match="--only nope: the pipeline has no such step"):
        stackmagic.run(notebook, only="nope")


def test_export_writes_a_bundle_with_step_notebooks_and_sources(
    initialised: Path, terminal
) -> None:
    notebook = demo(initialised)
    (initialised / ".stackmagicignore").write_text("secret.txt\n")
    (initialised / "secret.txt").write_text("not for the bundle")
    result = terminal("pipeline", "export", str(notebook), "--to", "bundle", "-o", "../out")
    assert result.code == 0, result.err
    bundle = initialised.parent / "out"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [step["name"] for step in manifest["steps"]] == ["load", "train", "report"]
    assert (bundle / "sources" / "helpers.py").is_file()
    assert not (bundle / "sources" / "secret.txt").exists()
    assert not (bundle / "sources" / "demo.ipynb").exists()
    train = nbformat.read(bundle / "steps" / "train.ipynb", as_version=4)
    assert "parameters" in train.cells[1].metadata["tags"]
    assert "load_input(stackmagic_context, 'raw')" in "".join(c.source for c in train.cells)
    assert (
        terminal("pipeline", "export", str(notebook), "--to", "bundle", "-o", "../out2").code == 0
    )
    again = json.loads((initialised.parent / "out2" / "manifest.json").read_text())
    assert again["hash"] == manifest["hash"], "the same notebook gives the same bundle"
    refused = terminal("pipeline", "export", str(notebook), "--to", "bundle", "-o", "../out")
    assert refused.code == 2 and "is not empty" in refused.err


def _run_in_process(folder: str, notebook: str, queue: multiprocessing.Queue) -> None:
    os.chdir(folder)
    try:
        queue.put(stackmagic.run(notebook, no_cache=True).status)
    except Exception:  # reported to the test, which fails on it
        queue.put(traceback.format_exc())


def test_two_pipelines_at_once_share_one_sqlite_store(initialised: Path) -> None:
    steps = [f"%%step s{i}\nv{i} = {'v' + str(i - 1) + ' + ' if i else ''}1" for i in range(6)]
    first = write_notebook(initialised / "one.ipynb", *steps)
    second = write_notebook(initialised / "two.ipynb", *steps)
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    processes = [
        multiprocessing.get_context("spawn").Process(
            target=_run_in_process, args=(str(initialised), str(nb), queue)
        )
        for nb in (first, second)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert results == ["completed", "completed"]
    database = sqlite3.connect(initialised / ".stackmagic" / "metadata.db")
    rows = database.execute(
        "SELECT p.name, s.status, count(*) FROM step_runs s JOIN runs r ON s.run_id = r.id "
        "JOIN pipelines p ON r.pipeline_id = p.id GROUP BY p.name, s.status"
    ).fetchall()
    assert sorted(rows) == [("one", "completed", 6), ("two", "completed", 6)]


def test_the_runtime_runs_an_exported_bundle_without_the_notebook(
    initialised: Path, tmp_path: Path, terminal
) -> None:
    notebook = demo(initialised)
    assert (
        terminal(
            "pipeline", "export", str(notebook), "--to", "bundle", "-o", str(tmp_path / "b")
        ).code
        == 0
    )
    notebook.unlink()
    (initialised / "helpers.py").unlink()  # the bundle's own copy must serve the steps

    def runtime(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stackmagic.runtime", *args],
            cwd=initialised,
            capture_output=True,
            text=True,
            timeout=300,
        )

    whole = runtime("run", str(tmp_path / "b"), "-p", "lr", "2")
    assert whole.returncode == 0, whole.stderr
    described = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    assert described["status"] == "completed" and described["parameters"]["lr"] == 2
    assert json.loads(Path(described["steps"][0]["outputs"]["raw"]["uri"]).read_text()) == [
        0,
        2,
        4,
        6,
        8,
    ]

    wrong = runtime("step", described["id"], "nope")
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"python -m stackmagic.runtime: error: run {described['id']} has no step 'nope' "
        "(steps: load, train, report)"
    ]
    again = runtime("step", described["id"], "train")
    assert again.returncode == 2 and "is completed already; start a new run" in again.stderr


def test_the_runtime_runs_one_unfinished_step_of_a_recorded_run(
    initialised: Path, terminal
) -> None:
    notebook = write_notebook(
        initialised / "flaky.ipynb",
        "import os",
        "%%step fetch\nassert os.environ.get('SERVICE_UP') == '1', 'the service is down'\nrows = [1, 2]",
        "%%step count\ntotal = len(rows)",
    )
    failed = terminal("pipeline", "run", str(notebook), "--json")
    assert failed.code == 1
    run_id = json.loads(failed.out)["id"]

    # as an orchestrator retries a failed step: the recorded run's stored bundle, run again here
    retried = subprocess.run(
        [sys.executable, "-m", "stackmagic.runtime", "step", run_id, "fetch"],
        cwd=initialised,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SERVICE_UP": "1"},
    )
    assert retried.returncode == 0, retried.stderr
    assert f"step 'fetch' of run {run_id}: completed" in retried.stdout
    fetch = json.loads(terminal("pipeline", "describe", run_id, "--json").out)["steps"][0]
    assert fetch["status"] == "completed" and fetch["error"] is None
    assert json.loads(Path(fetch["outputs"]["rows"]["uri"]).read_text()) == [1, 2]


def _kernels_of_this_test(folder: Path) -> list[str]:
    """Command lines of kernel processes still running in ``folder`` (their working directory):
    fresh kernels, and the template that warm steps fork from, with its forks."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc, "cwd").resolve() == folder.resolve():
                found.append(Path(proc, "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [line for line in found if "ipykernel" in line or "template_kernel" in line]


def test_ctrl_c_stops_the_run_its_kernels_and_records_it(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "slow.ipynb",
        "%%step wait\nimport time\ntime.sleep(120)\nx = 1",
    )
    with started_run(notebook) as process:
        assert process.stderr is not None
        for line in process.stderr:  # wait until the step runs in its kernel
            if "wait: running" in line:
                break
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130, "Ctrl-C ended the run without waiting for the step"
        assert "stackmagic: interrupted" in process.stderr.read()
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert runs[0]["status"] == "failed" and runs[0]["error"] == "interrupted"
    step = json.loads(terminal("pipeline", "describe", "latest", "--json").out)["steps"][0]
    assert step["status"] == "failed" and step["error"] == "interrupted"
    deadline = time.monotonic() + 10
    while _kernels_of_this_test(initialised) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _kernels_of_this_test(initialised) == [], "no kernel outlives its run"


def test_warnings_reach_the_terminal_and_python(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "explore.ipynb",
        "%%step a\nraw = 1",
        "cleaned = raw + 1",
        "%%step b\ntry:\n    y = raw + cleaned\nexcept NameError:\n    y = raw",
    )
    shown = terminal("pipeline", "run", str(notebook), "--progress", "lines")
    assert shown.code == 0, shown.err
    warnings = [line for line in shown.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "step 'b' reads 'cleaned', which only cell 2 defines" in warnings[0]
    with pytest.warns(UserWarning) as caught:
        stackmagic.run(notebook)
    ours = [str(w.message) for w in caught if w.category is UserWarning]
    assert ours == [line[len("warning: ") :] for line in warnings]


def test_parameters_bound_in_other_ways_can_be_set_and_invalidate_the_cache(
    initialised: Path,
) -> None:
    cells = ["%%step a\nfirst = low * 10", "%%step b\nsecond = high + 1"]
    notebook = write_notebook(initialised / "p.ipynb", *cells, parameters="low, high = 1, 2")
    assert stackmagic.run(notebook, parameters={"low": 5}).outputs("a")["first"] == 50
    assert [s.status for s in stackmagic.run(notebook).steps.values()] == ["completed", "cached"]
    write_notebook(notebook, *cells, parameters="low, high = 1, 200")
    again = stackmagic.run(notebook)
    assert [s.status for s in again.steps.values()] == ["completed", "completed"], (
        "a change the cell's text alone shows must not be served from the cache"
    )
    assert again.outputs("b")["second"] == 201


def test_stores_inside_the_project_stay_out_of_the_bundle(initialised: Path, terminal) -> None:
    for words in (
        ["artifact-store", "register", "here", "--type=local", "--path=store"],
        ["metadata-store", "register", "here", "--type=sqlite", "--path=meta.db"],
        ["stack", "register", "here", "-a", "here", "-m", "here", "-o", "default"],
        ["stack", "set", "here"],
    ):
        assert terminal(*words).code == 0
    notebook = demo(initialised)
    stackmagic.run(notebook)
    again = stackmagic.run(notebook)
    assert [s.status for s in again.steps.values()] == ["cached"] * 3, (
        "the store's own files changing between runs must not look like a code change"
    )
    bundles = list((initialised / "store" / "_bundles").glob("*.zip"))
    assert len(bundles) == 1
    with zipfile.ZipFile(bundles[0]) as bundle:
        names = bundle.namelist()
    assert "sources/helpers.py" in names
    assert not [n for n in names if n.startswith(("sources/meta.db", "sources/store"))]
    assert terminal("pipeline", "export", str(notebook), "--to", "bundle", "-o", "../out").code == 0
    assert not list((initialised.parent / "out" / "sources").glob("meta.db*"))


def test_a_final_step_keeps_what_can_be_saved(initialised: Path) -> None:
    notebook = write_notebook(
        initialised / "final.ipynb",
        "%%step make\nrows = [1, 2, 3]",
        "%%step write\nwith open('report.txt', 'w') as handle:\n    handle.write(str(rows))\n"
        "written = len(rows)",
    )
    run = stackmagic.run(notebook)
    assert run.outputs("write") == {"written": 3}
    executed = nbformat.read(run.steps["write"].notebook_uri, as_version=4)
    shown = executed.cells[-1].outputs[0]["data"]["text/plain"]
    assert "not kept (cannot be saved): handle" in shown


def test_a_kernel_that_is_not_installed_is_refused_before_the_run(
    initialised: Path, terminal
) -> None:
    written = write_notebook(initialised / "julia.ipynb", "%%step a\nx = 1")
    notebook = on_kernel(written, "no-such-kernel", "x", "x")
    result = terminal("pipeline", "run", str(notebook))
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "stackmagic: error: the notebook's kernel 'no-such-kernel' is not installed here; install it "
        "(`jupyter kernelspec list` shows the installed ones) or pick another kernel in Jupyter"
    ]
    assert json.loads(terminal("pipeline", "runs", "--json").out) == []


def test_parameters_json_cannot_keep_are_refused_and_nothing_is_recorded(
    initialised: Path, cli
) -> None:
    notebook = write_notebook(
        initialised / "finite.ipynb", "%%step a\ny = k * 2", parameters="k = 1.0\nhuge = 1e999"
    )
    for given in ({"k": float("inf")}, {"k": [1.0, float("nan")]}):
        with pytest.raises(StackmagicError, match="which JSON cannot keep"):
            stackmagic.run(notebook, parameters=given)
    refused = cli("pipeline", "run", str(notebook), "-p", "k", "1e999")
    assert refused.code != 0 and "which JSON cannot keep" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert json.loads(cli("pipeline", "runs", "--json").out) == []
    shown = cli("pipeline", "show", str(notebook), "--json")

    def no_constant(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    assert json.loads(shown.out, parse_constant=no_constant)["parameters"]["huge"] == "1e999"
