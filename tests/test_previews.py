"""Previews of step outputs through the REST API: real runs, read back through their artifact store.

The server is pytest-jupyter's, with the ``api`` client of ``test_server``.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the jp_* fixtures
from test_server import api, authorizer, jp_server_config  # noqa: F401 - fixtures

from notebooks import write_notebook

SETUP = """\
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression"""

MAKE = """\
%%step make
frame = pd.DataFrame({"n": np.arange(1_000_000), "label": ["row"] * 1_000_000})
matrix = np.arange(50 * 40).reshape(50, 40)
totals = frame.groupby("label").n.sum()
frame.head(3).to_csv("head.csv", index=False)
note = "a" * 100_000
settings = {"lr": 0.1, "layers": [64, 32]}
model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
figure, axes = plt.subplots(figsize=(3, 2))
axes.plot([3, 1, 2])
os.makedirs("plots", exist_ok=True)
figure.savefig("plots/loss.png")
with open("trace.bin", "wb") as out:
    out.write(bytes(range(256)) * 4)"""


@pytest.fixture
def finished(api: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import stackmagic

    monkeypatch.chdir(jp_root_dir)
    return stackmagic.run(write_notebook(jp_root_dir / "outputs.ipynb", SETUP, MAKE))


def _preview(api: Any, run_id: str, name: str, step: str = "make") -> tuple[int, Any]:
    return api("GET", "runs", run_id, "steps", step, "outputs", name, "preview")


def test_tables_arrays_images_text_and_json_are_previewed_within_bounds(
    api: Any, finished: Any
) -> None:
    status, frame = _preview(api, finished.id, "frame")
    assert status == 200, frame
    assert frame["kind"] == "table" and frame["materializer"] == "pandas"
    assert frame["columns"] == ["n", "label"]
    assert frame["rows"][:2] == [["0", "row"], ["1", "row"]] and len(frame["rows"]) == 20
    assert frame["total_rows"] == 1_000_000 and frame["total_columns"] == 2
    assert frame["truncated"] is True and frame["size"] > 0

    status, totals = _preview(api, finished.id, "totals")  # a Series with a named index
    assert status == 200, totals
    assert (totals["columns"], totals["rows"]) == (["label", "n"], [["row", "499999500000"]])

    status, csv = _preview(api, finished.id, "file:head.csv")
    assert status == 200 and csv["kind"] == "table", csv
    assert csv["columns"] == ["n", "label"] and csv["rows"][2] == ["2", "row"]
    assert (csv["total_rows"], csv["truncated"]) == (3, False)

    status, matrix = _preview(api, finished.id, "matrix")
    assert status == 200 and matrix["kind"] == "table", matrix
    assert len(matrix["rows"]) == 20 and len(matrix["columns"]) == 30
    assert matrix["rows"][1][:3] == ["40", "41", "42"]
    assert (matrix["total_rows"], matrix["total_columns"], matrix["truncated"]) == (50, 40, True)

    status, image = _preview(api, finished.id, "file:plots/loss.png")
    assert status == 200 and image["kind"] == "image", image
    png = base64.b64decode(image["data"])
    assert image["mime"] == "image/png" and png.startswith(b"\x89PNG")
    assert struct.unpack(">II", png[16:24]) == (300, 200), "the figure the step saved"

    status, note = _preview(api, finished.id, "note")
    assert status == 200 and note["kind"] == "text", note
    assert note["text"] == "a" * 64 * 1024 and note["truncated"] is True

    status, settings = _preview(api, finished.id, "settings")
    assert status == 200 and settings["kind"] == "json", settings
    assert json.loads(settings["text"]) == {"lr": 0.1, "layers": [64, 32]}
    assert settings["truncated"] is False

    status, binary = _preview(api, finished.id, "file:trace.bin")
    assert status == 200 and binary["kind"] == "none", binary
    assert binary["reason"] == "1024 bytes of binary data: no preview"


def test_a_pickled_value_is_never_unpickled_and_the_preview_says_how_to_load_it(
    api: Any, finished: Any, jp_root_dir: Path
) -> None:
    status, model = _preview(api, finished.id, "model")
    assert status == 200 and model["kind"] == "none", model
    assert model["type_name"].endswith("LinearRegression")
    assert model["reason"] == (
        "a LinearRegression: no preview, since reading a pickle runs code; "
        f"load it with `%pipeline load {finished.id} make.model`"
    )
    status, figure = _preview(api, finished.id, "figure")
    assert status == 200 and "fig.savefig('plot.png')" in figure["reason"], figure

    # a pickle that would run code when loaded: previewing it runs nothing
    canary = jp_root_dir / "unpickled"
    record = finished.record.step("make").outputs["model"]
    Path(record.uri).write_bytes(b"cos\nsystem\n(S'touch " + str(canary).encode() + b"'\ntR.")
    status, again = _preview(api, finished.id, "model")
    assert status == 200 and again["kind"] == "none"
    assert not canary.exists(), "the pickle was not loaded"


def test_an_unknown_run_step_or_output_is_a_404_with_the_reason(api: Any, finished: Any) -> None:
    status, answer = _preview(api, finished.id, "nothing")
    assert status == 404 and answer["message"].startswith(
        f"step 'make' of run {finished.id} has no output 'nothing' (outputs: "
    )
    assert "file:plots/loss.png" in answer["message"]
    status, answer = _preview(api, finished.id, "frame", step="other")
    assert status == 404 and "has no step 'other'" in answer["message"]
    status, answer = _preview(api, "no-such-run", "frame")
    assert status == 404 and "no-such-run" in answer["message"]


def test_the_run_names_the_edges_of_its_dag(api: Any, jp_root_dir: Path, monkeypatch: Any) -> None:
    import stackmagic

    monkeypatch.chdir(jp_root_dir)
    notebook = write_notebook(
        jp_root_dir / "dag.ipynb",
        "%%step load\nraw = [1, 2, 3]",
        "%%step double\ndoubled = [x * 2 for x in raw]",
        "%%step total\ncount = len(raw)",
        "%%step report --after total\nprint(doubled)",
    )
    finished = stackmagic.run(notebook)
    status, run = api("GET", "runs", finished.id)
    assert status == 200, run
    assert sorted(run["edges"]) == [
        ["double", "report"],
        ["load", "double"],
        ["load", "total"],
        ["total", "report"],
    ]


ODD = """\
%%step odd
import numpy as np
import pandas as pd
wide = pd.DataFrame({f"c{i}": [i, i + 1] for i in range(45)})
mixed = np.array([{"a": 1}, None], dtype=object)
with open("accents.txt", "w", encoding="utf-8") as out:
    out.write("é" * 40_000)
with open("broken.json", "w") as out:
    out.write("{not json")"""


def test_wide_tables_long_text_and_damaged_files_preview_what_they_can(
    api: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stackmagic

    monkeypatch.chdir(jp_root_dir)
    run = stackmagic.run(write_notebook(jp_root_dir / "odd.ipynb", ODD))

    status, wide = _preview(api, run.id, "wide", step="odd")
    assert status == 200 and wide["kind"] == "table", wide
    assert wide["columns"] == [f"c{i}" for i in range(30)] and wide["rows"][1][29] == "30"
    assert (wide["total_columns"], wide["truncated"]) == (45, True)

    status, accents = _preview(api, run.id, "file:accents.txt", step="odd")
    assert status == 200 and accents["kind"] == "text", "80 kB of UTF-8 is text, cut"
    assert set(accents["text"]) == {"é"} and accents["truncated"] is True
    assert len(accents["text"].encode()) == 64 * 1024, "cut at a character's edge"

    status, broken = _preview(api, run.id, "file:broken.json", step="odd")
    assert status == 200 and (broken["kind"], broken["text"]) == ("text", "{not json"), broken

    status, mixed = _preview(api, run.id, "mixed", step="odd")
    assert status == 200 and mixed["kind"] == "none", mixed
    assert "runs code" in mixed["reason"] and "%pipeline load" in mixed["reason"]
