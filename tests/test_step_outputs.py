"""What steps pass on at run time: changed inputs, unchanged ones by reference, and files.

Real kernels on the default local stack, and ``kfp.local`` for the file
handoff where each task has a fresh copy of the bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_kubeflow import local_kubeflow  # noqa: F401 - a fixture

import stackmagic
from notebooks import write_notebook

pytestmark = pytest.mark.kernel


def test_an_input_a_step_may_change_is_passed_on_by_reference_when_unchanged(
    initialised: Path,
) -> None:
    run = stackmagic.run(
        write_notebook(
            initialised / "maybe.ipynb",
            "import pandas as pd",
            "%%step load\ndf = pd.DataFrame({'x': [3, 1, 2]}); items = [1]",
            "%%step maybe\nif df['x'].sum() > 100:\n    df.sort_values('x', inplace=True)\nitems.append(2)",
            "%%step use\nprint(df['x'].tolist(), items)",
        )
    )
    load, maybe = (run.record.step(name).outputs for name in ("load", "maybe"))
    assert maybe["df"].uri == load["df"].uri, "unchanged: the same artifact, no copy"
    assert maybe["items"].uri != load["items"].uri, "changed: saved by the step that changed it"
    assert run.outputs("maybe")["items"] == [1, 2]


def test_a_function_a_step_defines_sets_and_reads_the_globals_of_the_step_calling_it(
    initialised: Path,
) -> None:
    run = stackmagic.run(
        write_notebook(
            initialised / "define.ipynb",
            "%%step helpers\nSCALE = 2\ndef configure(n):\n    global config\n    config = n * SCALE",
            "%%step tune\nSCALE = 10\nconfigure(3)",
            "%%step report\nsummary = {'config': config}",
        )
    )
    assert run.outputs("report")["summary"] == {"config": 30}, "as the notebook computes it"


def test_a_change_the_code_does_not_show_is_reported_not_silent(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = write_notebook(
        initialised / "hidden.ipynb",
        "%%step load\nrows = [3, 1, 2]",
        "%%step sneak\nsorter = lambda values: values.sort()\nsorter(rows)",
        "%%step use\nprint(rows)",
    )
    from stackmagic.progress import LogLines

    stackmagic.run(notebook, progress=LogLines())
    said = capsys.readouterr().err
    assert "warning: step 'sneak' changed 'rows' in place in a way its code does not show" in said


def files_notebook(folder: Path) -> Path:
    (folder / "raw.csv").write_text("a,b\n1,2\n3,4\n")
    return write_notebook(
        folder / "files.ipynb",
        "import os, pickle\nimport pandas as pd",
        "%%step extract\nos.makedirs('data', exist_ok=True)\n"
        "pd.read_csv('raw.csv').to_csv('data/part.csv', index=False)",
        "%%step train\npickle.dump({'w': 7}, open('model.pkl', 'wb'))\n"
        "open('training.log', 'a').write('trained\\n')",
        "%%step use\nprint(pd.read_csv('data/part.csv')['a'].sum(), pickle.load(open('model.pkl', 'rb')))",
        "%%step other\nprint('independent')",
    )


def statuses(run: stackmagic.pipelines.PipelineRun) -> dict[str, str]:
    return {name: step.status for name, step in run.steps.items()}


def test_files_steps_write_are_kept_and_never_spoil_the_next_runs_cache(initialised: Path) -> None:
    notebook = files_notebook(initialised)
    first = stackmagic.run(notebook)
    assert set(first.files("extract")) == {"data/part.csv"}
    assert set(first.files("train")) == {"model.pkl", "training.log"}
    assert first.record.step("use").outputs == {}, "it only read them"

    again = stackmagic.run(notebook)
    assert set(statuses(again).values()) == {"cached"}, "files a run wrote are outputs, not sources"

    (initialised / "model.pkl").unlink()
    (initialised / "raw.csv").write_text("a,b\n10,2\n30,4\n")
    changed = stackmagic.run(notebook)
    assert statuses(changed) == {
        "extract": "completed",
        "train": "cached",
        "use": "completed",
        "other": "cached",
    }, "only the steps that read the file, and after"
    reasons = {name: changed.record.step(name).reason for name in ("extract", "use")}
    assert reasons == {
        "extract": "file raw.csv changed",
        "use": "file data/part.csv changed (from extract)",
    }
    assert (initialised / "model.pkl").exists(), "a cached step's files are put back"


def test_files_reach_later_steps_on_kfp_local(terminal, local_kubeflow: Path) -> None:
    notebook = files_notebook(local_kubeflow)
    result = terminal("pipeline", "run", str(notebook), "--progress", "none", "--json")
    assert result.code == 0, result.err
    run = json.loads(result.out)
    assert {s["name"]: s["status"] for s in run["steps"]} == dict.fromkeys(
        ["extract", "train", "use", "other"], "completed"
    )
    assert not (local_kubeflow / "model.pkl").exists(), "each task ran in its own copy"
    executed = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    use = next(s for s in executed["steps"] if s["name"] == "use")
    assert use["status"] == "completed"


@pytest.mark.parametrize("name", ["file:../escaped.txt", "file:/tmp/escaped.txt", "file:a/../../x"])
def test_a_file_output_record_that_climbs_out_of_the_folder_writes_nothing(
    tmp_path: Path, name: str
) -> None:
    from stackmagic.errors import StackmagicError
    from stackmagic.runtime import files
    from stackmagic.stores.artifacts import ArtifactInfo, ArtifactStore

    store = ArtifactStore(str(tmp_path / "store"))
    uri = store.uri("p", "r", "s", "files", "x.txt")
    store.put_bytes(b"planted", uri)
    info = ArtifactInfo(uri=uri, materializer="file", content_hash="0", size=7, type_name="file")
    folder = tmp_path / "project" / "here"
    folder.mkdir(parents=True)
    with pytest.raises(StackmagicError, match="names no place inside"):
        files.put_in_place(store, folder, {name: info})
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "project" / "x").exists()
