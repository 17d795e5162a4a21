"""What a step receives: the rule that makes a pipeline compute what the notebook computes.

Read from the code alone (no kernel): in-place changes and what they order,
reads that stay parallel, aliases, the notebook's own functions, ``global``,
``del``, imports, files handed between steps, cells left out, seeded generators.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.notebook import load_pipeline
from stackmagic.notebook.spec import PipelineSpec


def pipeline(tmp_path: Path, *cells: str, parameters: str | None = None) -> PipelineSpec:
    return load_pipeline(write_notebook(tmp_path / "nb.ipynb", *cells, parameters=parameters))


def edges(spec: PipelineSpec) -> dict[str, list[str]]:
    return {name: step.upstream for name, step in spec.steps.items()}


@pytest.mark.parametrize(
    "change",
    [
        "df['x'] = df['x'].astype(int)",
        "df.loc[df['x'] == '1', 'x'] = '0'",
        "df.drop(columns=['x'], inplace=True)",
        "df['x'].fillna('0', inplace=True)",
        "del df['x']",
        "df.x += '1'",
        "frame = df\nframe['y'] = 1",
        "for row in rows:\n    row.append(0)",
        "items.append(3)",
        "model.fit(rows, items)",
        "random.shuffle(items)",
        "np.copyto(arr, 0, casting='unsafe')\nnp.multiply(arr, 2, out=arr)",
    ],
)
def test_a_change_in_place_makes_the_step_a_producer_of_the_name(
    tmp_path: Path, change: str
) -> None:
    spec = pipeline(
        tmp_path,
        "import random\nimport numpy as np\nimport pandas as pd",
        "%%step load\ndf = pd.DataFrame({'x': ['1']}); items = [1]; rows = [[1]]\n"
        "arr = np.zeros(2); model = object()",
        f"%%step edit\n{change}",
        "%%step use\nprint(df, items, rows, arr, model)",
    )
    edit, use = spec.steps["edit"], spec.steps["use"]
    assert edit.changes, "the step is seen to change a name it received"
    for name in edit.changes:
        assert use.inputs[name] == "edit", f"{name} comes from the step that changed it last"
        assert name in edit.outputs
    assert "random" not in edit.changes and "np" not in edit.changes, "modules are not values"


def test_steps_that_only_read_the_same_input_stay_parallel(tmp_path: Path) -> None:
    spec = pipeline(
        tmp_path,
        "import pandas as pd",
        "%%step load\ndf = pd.DataFrame({'a': [1, 2], 'b': [3, 4]}); model = None",
        "%%step peek\nprint(df.head(), df.describe(), df.groupby('a').mean())",
        "%%step count\nprint(df['a'].value_counts(), df.shape, len(df))",
        "%%step score\nprint(model.predict(df) if model else df.to_numpy().sum())",
    )
    assert edges(spec) == {"load": [], "peek": ["load"], "count": ["load"], "score": ["load"]}
    assert all(not step.changes for step in spec.steps.values())


def test_a_method_known_neither_way_maybe_changes_what_a_step_made_not_what_the_setup_made(
    tmp_path: Path,
) -> None:
    spec = pipeline(
        tmp_path,
        "import logging\nlog = logging.getLogger('nb')\nsession = object()\n"
        "def say(text):\n    log.info(text)",
        "%%step load\nbatches = [[1], [2]]\nsession.connect()\nsay('loaded')",
        "%%step use\nbatches.rebalance()\nlog.warning('used')",
        "%%step after\nprint(batches, session, log)",
    )
    assert spec.steps["load"].changes == [] and spec.steps["use"].changes == ["batches"]
    assert spec.steps["after"].inputs == {"batches": "use"}, "session and log stay the setup's"


def test_the_notebooks_functions_count_as_what_they_do(tmp_path: Path) -> None:
    spec = pipeline(
        tmp_path,
        "config = None\nlog = []\n"
        "def configure(n):\n    global config\n    config = {'n': n}\n"
        "def note(text):\n    log.append(text)\n"
        "def clean(frame):\n    tidy(frame)\n"
        "def tidy(table):\n    table.dropna(inplace=True)\n    note('tidied')",
        "%%step setup_run\nconfigure(3)",
        "%%step load\nimport pandas as pd\ndf = pd.DataFrame({'x': [1, None]})",
        "%%step clean_it\nclean(df)",
        "%%step show\nprint(config, log, df)",
    )
    show = spec.steps["show"]
    assert show.inputs == {"config": "setup_run", "log": "clean_it", "df": "clean_it"}
    assert spec.steps["clean_it"].changes == ["df", "log"], "through two calls, and a global"
    assert spec.steps["clean_it"].inputs == {"df": "load"}, "log is the setup's until then"


def test_functions_a_step_defines_are_defined_again_where_used_with_what_they_read(
    tmp_path: Path,
) -> None:
    spec = pipeline(
        tmp_path,
        "%%step helpers\nSCALE = 2\ntable = {'a': 1}\n"
        "def lookup(key):\n    return table[key] * SCALE\n"
        "@staticmethod\ndef configure(n):\n    global config\n    config = lookup('a') * n",
        "%%step use\nconfigure(3)\nprint(config)",
    )
    use = spec.steps["use"]
    assert list(use.definitions) == ["configure", "lookup"], "and what configure calls"
    assert use.definitions["configure"].startswith("@staticmethod\ndef configure(n):")
    assert use.inputs == {"SCALE": "helpers", "table": "helpers"}, "what their bodies read"
    assert spec.steps["helpers"].outputs == ["SCALE", "table"], "functions are not passed as data"


def test_del_is_a_read_and_a_deleted_name_is_gone(tmp_path: Path) -> None:
    spec = pipeline(
        tmp_path,
        "%%step make\nbig = list(range(10))\nsmall = big[:2]",
        "%%step tidy\ndel big",
        "%%step use\nprint(small)",
    )
    assert spec.steps["tidy"].inputs == {"big": "make"}, "del reads the name"
    assert spec.steps["tidy"].outputs == [] and spec.steps["tidy"].results == []
    with pytest.raises(StackmagicError, match="reads 'big', which step 'tidy' deletes before it"):
        pipeline(tmp_path, "%%step make\nbig = 1", "%%step tidy\ndel big", "%%step use\nprint(big)")


def test_names_a_step_imports_are_imported_again_not_passed(tmp_path: Path) -> None:
    spec = pipeline(
        tmp_path,
        "%%step tools\nimport statistics\nfrom collections import Counter as Tally\nxs = [1, 2, 2]",
        "%%step use\nprint(statistics.mean(xs), Tally(xs))",
    )
    use = spec.steps["use"]
    assert use.inputs == {"xs": "tools"}, "no data edge for a module or an imported class"
    assert use.imports == ["from collections import Counter as Tally", "import statistics"]
    assert spec.steps["tools"].outputs == ["xs"]


def test_files_one_step_writes_and_a_later_one_reads_order_them(tmp_path: Path) -> None:
    spec = pipeline(
        tmp_path,
        "import os, pickle\nMODEL = 'model.pkl'",
        "%%step extract\nos.makedirs('data', exist_ok=True)\nopen('data/part.txt', 'w').write('x')",
        "%%step train\npickle.dump({'w': 1}, open(MODEL, 'wb'))",
        "%%step other\nprint('independent')",
        "%%step use\nprint(open('./data/part.txt').read(), pickle.load(open(MODEL, 'rb')))",
    )
    assert spec.steps["use"].files == {"extract": ["data/part.txt"], "train": ["model.pkl"]}
    assert edges(spec)["use"] == ["extract", "train"] and edges(spec)["other"] == []


def test_pipeline_show_names_the_changes_and_files_an_edge_carries(tmp_path: Path, cli) -> None:
    notebook = write_notebook(
        tmp_path / "show.ipynb",
        "import pandas as pd",
        "%%step load\ndf = pd.DataFrame({'x': ['1', '2']}); n = 2",
        "%%step convert\ndf['x'] = df['x'].astype(int)\ndf.to_csv('clean.csv')",
        "%%step report\nprint(df['x'].sum() * n, open('clean.csv').read())",
    )
    shown = cli("pipeline", "show", str(notebook))
    assert shown.code == 0, shown.err
    assert "  load -> convert  [changes df]" in shown.out
    assert "  convert -> report  [df, file clean.csv]" in shown.out
    assert "  load -> report  [n]" in shown.out


@pytest.mark.parametrize("how", ["tag", "magic"])
def test_a_cell_marked_notebook_only_is_left_out(tmp_path: Path, how: str) -> None:
    install = "!pip install --quiet -r requirements.txt\nready = True"
    cell = (
        new_code_cell(install, metadata={"tags": ["skip"]})
        if how == "tag"
        else new_code_cell(f"%%notebook-only\n{install}")
    )
    path = tmp_path / "prep.ipynb"
    nbformat.write(new_notebook(cells=[cell, new_code_cell("%%step a\nx = 1")]), path)
    spec = load_pipeline(path)
    assert spec.setup == [], "the cell runs in no step"
    with pytest.raises(StackmagicError, match="reads 'ready'"):
        nbformat.write(new_notebook(cells=[cell, new_code_cell("%%step a\nx = ready")]), path)
        load_pipeline(path)


def test_seeded_global_generators_drawn_by_several_steps_are_warned_about(tmp_path: Path) -> None:
    cells = (
        "import numpy as np\nimport random\nfrom sklearn.model_selection import train_test_split\n"
        "np.random.seed(0)\nrandom.seed(1)",
        "%%step a\nx = np.random.rand(3)",
        "%%step b\ny = train_test_split([1, 2, 3, 4])",
        "%%step c\nz = train_test_split([1, 2, 3, 4], random_state=0)\nw = random.random()",
    )
    warnings = pipeline(tmp_path, *cells).warnings
    assert len(warnings) == 1, warnings
    assert "seeds the global numpy.random generator" in warnings[0]
    assert "'a', 'b' each draw" in warnings[0], (
        "c gives its own random_state, and draws from random"
    )
    unseeded = cells[0].replace("np.random.seed(0)", "")
    assert pipeline(tmp_path, unseeded, *cells[1:]).warnings == [], "nothing seeded draws twice"


def test_a_data_file_matters_to_the_steps_that_name_it_unless_a_module_beside_names_it(
    tmp_path: Path,
) -> None:
    from stackmagic.notebook.exporter import export_bundle

    for name in ("raw.csv", "other.csv", "more.csv"):
        (tmp_path / name).write_text("a\n1\n")
    (tmp_path / "helpers.py").write_text("def other():\n    return open('other.csv').read()\n")
    spec = pipeline(
        tmp_path,
        "import glob\nimport pandas as pd",
        "%%step a\nx = pd.read_csv('raw.csv')",
        "%%step b\nfrom helpers import other\ny = other() + open('more.csv').read()",
        "%%step c\nz = [pd.read_csv(path) for path in glob.glob('*.csv')]",
    )
    manifest = export_bundle(spec, tmp_path / "bundle-1").manifest
    assert manifest["data_files"] == {"raw.csv": ["a"], "more.csv": ["b"]}, (
        "other.csv, which helpers.py names, matters to every step"
    )
    assert [step["reads_unnamed_files"] for step in manifest["steps"]] == [False, False, True], (
        "c lists the notebook's own folder: every file matters to it"
    )

    (tmp_path / "helpers.py").write_text("def other(path):\n    return open(path).read()\n")
    assert export_bundle(spec, tmp_path / "bundle-2").manifest["data_files"] == {}, (
        "a module that reads paths it is given: every file matters to every step"
    )
