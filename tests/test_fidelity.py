"""A pipeline run prints what Run All prints: notebooks in the style of public tutorials.

Each notebook is run twice, top to bottom in one kernel (the yardstick) and as a
pipeline on the default local stack, and every ``%%step`` cell's text is compared
(tests/fidelity.py). The notebooks lean on what tutorials do all the time and what
pipelines of notebooks get wrong: in-place pandas edits, estimators fitted in a later
cell, globals set by helpers, imports made in one cell and used in another, files
handed from one cell to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from fidelity import Comparison, Writer, compare, run_pipeline

from notebooks import write_notebook

pytestmark = pytest.mark.kernel

#: Compares Run All and a pipeline run of the notebook a writer makes.
Check = Callable[[Writer], Comparison]
#: The ``cli`` fixture: ``stackmagic ARGS`` in this process.
Cli = Callable[..., Result]


@pytest.fixture
def run_both(initialised: Path, tmp_path: Path) -> Check:
    """Compare Run All and a pipeline run of a notebook writer, in this test's folders."""

    def check(write: Writer) -> Comparison:
        return compare(initialised, write, tmp_path / "run-all")

    return check


# --- the notebooks ------------------------------------------------------------------------

WEATHER_CSV = """\
date,city,temp,humidity,wind,station_code
2021-01-01,Oslo,-3.5,80,12,OS1
2021-01-02,Oslo,,85,10,OS1
2021-01-03,Oslo,-1.0,NA,8,OS1
2021-01-04,Oslo,-2.0,78,11,OS1
2021-01-01,Rome,12.5,60,5,RM2
2021-01-02,Rome,13.0,62,,RM2
2021-01-03,Rome,999,58,7,RM2
2021-01-04,Rome,14.5,55,6,RM2
2021-01-05,Rome,15.0,52,4,RM2
"""


def pandas_cleaning(folder: Path) -> Path:
    """Kaggle/Elyra weather cleaning: every step edits df in place, notes and stats grow."""
    (folder / "weather.csv").write_text(WEATHER_CSV)
    return write_notebook(
        folder / "pandas_cleaning.ipynb",
        "import numpy as np\nimport pandas as pd\n%load_ext stackmagic",
        "# md: ## Load the raw readings",
        "%%step load\ndf = pd.read_csv('weather.csv', dtype=str)\nnotes = []\nstats = {}\n"
        "notes.append(f'loaded {len(df)} rows')\nstats['raw_rows'] = len(df)\ndf.shape",
        "%%step convert\ndf['temp'] = df['temp'].astype(float)\n"
        "df['humidity'] = pd.to_numeric(df['humidity'], errors='coerce')\n"
        "df['wind'] = df['wind'].astype(float)\ndf['date'] = pd.to_datetime(df['date'])\n"
        "stats['sentinels'] = int((df['temp'] > 100).sum())\n"
        "df.loc[df['temp'] > 100, 'temp'] = np.nan\n"
        "notes.append('converted types, sentinel 999 -> NaN')\nprint(df.dtypes.to_dict())",
        "%%step clean\ndf.drop(columns=['station_code'], inplace=True)\ndf.dropna(inplace=True)\n"
        "df.rename(columns={'temp': 'temperature'}, inplace=True)\n"
        "df.reset_index(drop=True, inplace=True)\nstats['clean_rows'] = len(df)\n"
        "notes.append(f'dropped {stats[\"raw_rows\"] - len(df)} rows')\nprint(len(df), list(df.columns))",
        "%%step peek\ndf.head()",
        "%%step by_city\ndf.groupby('city')[['temperature', 'humidity', 'wind']].mean()",
        "%%step summary\nprint(df.dtypes)\nprint(df.describe())\n"
        "print(df['temperature'].sum(), df['humidity'].sum(), df['wind'].sum())\n"
        "print(notes)\nprint(stats)",
    )


def sklearn_models(folder: Path) -> Path:
    """scikit-learn tutorial: estimators made in one cell and fitted in place in a later one."""
    return write_notebook(
        folder / "sklearn_models.ipynb",
        "import numpy as np\nimport pandas as pd\nfrom sklearn.datasets import make_classification\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.metrics import accuracy_score, classification_report\n"
        "from sklearn.model_selection import train_test_split\n"
        "from sklearn.preprocessing import StandardScaler\n%load_ext stackmagic",
        "%%step data\nX, y = make_classification(n_samples=200, n_features=5, n_informative=3, "
        "random_state=42)\nprint(X.shape, np.bincount(y))",
        "%%step split\nX_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, "
        "random_state=0)\nprint(len(X_train), len(X_test))",
        "%%step make_scaler\nscaler = StandardScaler()",
        "%%step fit_scaler\nscaler.fit(X_train)",
        "%%step scale\nX_train_s = scaler.transform(X_train)\nX_test_s = scaler.transform(X_test)\n"
        "print(X_train_s.mean(axis=0).round(6) + 0.0)",
        "%%step make_model\nmodel = LogisticRegression(C=0.5)\nmodel",
        "%%step train\nmodel.fit(X_train_s, y_train)",
        "%%step forest\nforest = RandomForestClassifier(n_estimators=20, random_state=0)\n"
        "forest.fit(X_train_s, y_train)\nprint(len(forest.estimators_))",
        "%%step evaluate\nfor name, estimator in [('logistic', model), ('forest', forest)]:\n"
        "    predicted = estimator.predict(X_test_s)\n"
        "    print(name, round(accuracy_score(y_test, predicted), 4))\n"
        "    print(classification_report(y_test, predicted))\nprint(model.coef_.round(3))",
    )


def global_config(folder: Path) -> Path:
    """Helpers that set a global or append to a module-level list; del; imports made in a step."""
    return write_notebook(
        folder / "global_config.ipynb",
        "%load_ext stackmagic\nconfig = None\nhistory = []\n\n"
        "def configure(n):\n    global config\n"
        "    config = {'layers': n, 'units': [16 * (i + 1) for i in range(n)]}\n\n"
        "def remember(event):\n    history.append(event)",
        "%%step setup_model\nconfigure(3)\nremember('configured')\nbig = list(range(1000))\n"
        "print(len(big))",
        "%%step show\nprint(config)\nprint(history)",
        "%%step tidy\ndel big\nprint('big' in globals())",
        "%%step imports\nimport statistics\nfrom collections import Counter\nwords = 'abracadabra'",
        "%%step use_imports\nprint(statistics.mean([1, 2, 3, 4]))\n"
        "print(Counter(words).most_common(2))\nprint('big' in globals())",
    )


def seeded_rng(folder: Path) -> Path:
    """The legacy global numpy generator seeded in setup: each step would restart from the seed."""
    return write_notebook(
        folder / "seeded_rng.ipynb",
        "import numpy as np\n%load_ext stackmagic\nnp.random.seed(0)",
        "%%step first_draw\nprint(np.random.rand(3))",
        "%%step second_draw\nprint(np.random.rand(3))",
    )


def files_handoff(folder: Path) -> Path:
    """Files one step writes (a folder, a pickle, a log, a figure) read by the next step."""
    (folder / "readings.csv").write_text("day,value\n1,2.5\n2,3.5\n3,4.0\n")
    return write_notebook(
        folder / "files_handoff.ipynb",
        "import csv\nimport os\nimport pickle\n\nimport matplotlib\nmatplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n%load_ext stackmagic",
        "%%step prepare\nos.makedirs('data', exist_ok=True)\n"
        "with open('data/part.txt', 'w') as handle:\n    handle.write('alpha\\nbeta\\n')\n"
        "with open('model.pkl', 'wb') as handle:\n"
        "    pickle.dump({'weights': [0.5, 1.5], 'bias': -1}, handle)\n"
        "with open('training.log', 'w') as handle:\n    handle.write('epoch 1 loss 0.3\\n')\n"
        "figure, axes = plt.subplots()\naxes.plot([1, 2, 3], [2, 4, 3])\n"
        "figure.savefig('plot.png')\nplt.close(figure)\nprint(sorted(os.listdir('data')))",
        "%%step use\nwith open('data/part.txt') as handle:\n    parts = handle.read().split()\n"
        "with open('model.pkl', 'rb') as handle:\n    restored = pickle.load(handle)\n"
        "print(parts, restored)\nprint(open('training.log').read().strip())\n"
        "print(os.path.getsize('plot.png') > 0)",
        "%%step measure\nwith open('readings.csv') as handle:\n"
        "    values = [float(row['value']) for row in csv.DictReader(handle)]\nprint(sum(values))",
        "%%step report\nprint(len(values), max(values))",
    )


def minimal(folder: Path) -> Path:
    """The smallest case of a change made in place by a later step."""
    return write_notebook(
        folder / "minimal.ipynb",
        "import pandas as pd\n%load_ext stackmagic",
        "%%step load\ndf = pd.DataFrame({'x': ['1', '2', '3']})\nitems = [1, 2]",
        "%%step convert\ndf['x'] = df['x'].astype(int)\nitems.append(3)",
        "%%step total\nprint(df['x'].sum(), items)",
    )


# --- the tests ----------------------------------------------------------------------------


def test_minimal_in_place_change_reaches_the_next_step(run_both: Check) -> None:
    compared = run_both(minimal)
    assert compared.notebook_printed("total") == "6 [1, 2, 3]\n", "the yardstick itself"
    compared.assert_same()


def test_pipeline_show_says_which_step_changes_a_name(initialised: Path, cli: Cli) -> None:
    shown = cli("pipeline", "show", str(minimal(initialised)))
    assert shown.code == 0, shown.err
    assert any("convert" in line and "changes df" in line for line in shown.out.splitlines()), (
        shown.out
    )


def test_pandas_cleaning_in_place(run_both: Check) -> None:
    compared = run_both(pandas_cleaning)
    summary = compared.notebook_printed("summary")
    assert "temperature" in summary and "'clean_rows': 5" in summary, summary
    compared.assert_same()


def test_sklearn_estimators_fitted_in_a_later_cell(run_both: Check) -> None:
    compared = run_both(sklearn_models)
    assert "logistic" in compared.notebook_printed("evaluate"), "the yardstick itself"
    compared.assert_same()


def test_globals_set_by_helpers_del_and_imports_made_in_a_step(run_both: Check) -> None:
    compared = run_both(global_config)
    assert "[16, 32, 48]" in compared.notebook_printed("show"), "the yardstick itself"
    compared.assert_same()


def test_a_seeded_global_generator_is_warned_about(initialised: Path, cli: Cli) -> None:
    """Steps cannot share one generator's state, so here the pipeline is expected to print
    other numbers than Run All (each step starts again from the seed): the user must be told."""
    notebook = seeded_rng(initialised)

    def warning_lines(result: Result) -> list[str]:
        # The exact wording is the product's to choose; it must say "seed" and name both steps.
        return [
            line
            for line in (result.out + result.err).splitlines()
            if "seed" in line.lower() and "first_draw" in line and "second_draw" in line
        ]

    shown = cli("pipeline", "show", str(notebook))
    assert shown.code == 0, shown.err
    assert len(warning_lines(shown)) == 1, shown.out + shown.err
    ran = cli("pipeline", "run", str(notebook))
    assert ran.code == 0, ran.err
    assert len(warning_lines(ran)) == 1, ran.out + ran.err


def test_files_handed_between_steps(run_both: Check) -> None:
    compared = run_both(files_handoff)
    assert "['alpha', 'beta'] {'weights': [0.5, 1.5], 'bias': -1}" in compared.notebook_printed(
        "use"
    )
    compared.assert_same()


def test_files_steps_write_keep_the_cache_and_a_changed_data_file_reruns_its_steps(
    initialised: Path,
) -> None:
    """Apart from the comparison, so that a difference in prints does not hide the cache's part."""
    notebook = files_handoff(initialised)
    first = run_pipeline(notebook)
    assert first.status == "completed", {n: (s.status, s.error) for n, s in first.steps.items()}
    again = run_pipeline(notebook)
    assert {n: s.status for n, s in again.steps.items()} == dict.fromkeys(first.steps, "cached"), (
        "files the steps wrote must not invalidate the next run's cache"
    )

    (initialised / "readings.csv").write_text("day,value\n1,2.5\n2,3.5\n3,9.0\n")
    changed = run_pipeline(notebook)
    assert {n: s.status for n, s in changed.steps.items()} == {
        "prepare": "cached",
        "use": "cached",
        "measure": "completed",
        "report": "completed",
    }
