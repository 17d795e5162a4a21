"""Warm steps against fresh kernels, on what tutorial notebooks do in their setup.

A step forked from the run's template must behave as a step whose kernel ran
the setup itself: the same outputs in the executed notebook, the same random
numbers, the same modules, and no fallback to fresh kernels that a kernel
would not need. Each test runs warm and checks what a fresh kernel shows.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_warm_steps import run_warm

from notebooks import write_notebook

pytestmark = pytest.mark.kernel


def shown(notebook: dict, role: str | None = None) -> str:
    """The text the notebook shows under its setup cells (``setup``), the step's own
    (``step``), or all its cells (None)."""
    texts = []
    for cell in notebook["cells"]:
        marks = cell["metadata"].get("stackmagic", {})
        kind = marks.get("role", "step" if "cell" in marks else None)
        if role is None or kind == role:
            for output in cell.get("outputs", []):
                texts.append("".join(output.get("text", "")))
                texts.append("".join(output.get("data", {}).get("text/html", "")))
    return "".join(texts)


def test_logging_configured_in_the_setup_shows_in_each_step(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "logs.ipynb",
        "import logging\nlogging.basicConfig(level=logging.INFO)\nlog = logging.getLogger('demo')",
        "%%step train\nlog.info('training now')\nscore = 0.9",
    )
    train = run_warm(terminal, notebook)["train"]
    assert "INFO:demo:training now" in shown(train, "step"), "the step's log lines were lost"


def test_a_setup_seeding_through_a_helper_module_seeds_every_step(
    initialised: Path, terminal
) -> None:
    (initialised / "helpers.py").write_text(
        "import random\n\n\ndef seed_everything(seed):\n    random.seed(seed)\n"
    )
    notebook = write_notebook(
        initialised / "seeded.ipynb",
        "import random\nfrom helpers import seed_everything\nseed_everything(42)",
        "%%step a\na = random.random()\nprint(a)",
    )
    step = run_warm(terminal, notebook)["a"]
    assert shown(step, "step") == f"{random.Random(42).random()}\n"


def test_steps_draw_apart_from_a_generator_the_setup_made_unseeded(initialised: Path) -> None:
    import stackmagic

    notebook = write_notebook(
        initialised / "draws.ipynb",
        "import numpy as np\nrng = np.random.default_rng()",
        "%%step left\na = float(rng.random())",
        "%%step right\nb = float(rng.random())",
    )
    run = stackmagic.run(notebook)
    assert run.outputs("left")["a"] != run.outputs("right")["b"], "two steps drew the same"


def test_a_step_updating_a_setup_display_updates_it(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "status.ipynb",
        "from IPython.display import display, HTML\n"
        "status = display(HTML('<b>loading</b>'), display_id=True)",
        "%%step a\nstatus.update(HTML('<b>loaded</b>'))\nx = 1",
    )
    setup = shown(run_warm(terminal, notebook)["a"], "setup")
    assert "loaded</b>" in setup and "loading" not in setup


def test_a_module_beside_the_notebook_does_not_shadow_the_standard_library(
    initialised: Path, terminal
) -> None:
    (initialised / "statistics.py").write_text("def mean(values):\n    return 'local'\n")
    notebook = write_notebook(
        initialised / "stats.ipynb",
        "import statistics",
        "%%step a\nm = statistics.mean([2, 4])\nprint(m)",
    )
    assert shown(run_warm(terminal, notebook)["a"], "step") == "3\n"


def test_input_in_the_setup_fails_as_in_a_kernel(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "ask.ipynb",
        "try:\n    name = input('name? ')\nexcept Exception as error:\n"
        "    name = type(error).__name__",
        "%%step a\nprint(name)",
    )
    assert shown(run_warm(terminal, notebook)["a"], "step") == "StdinNotImplementedError\n"


def test_a_setup_enabling_faulthandler_stays_warm(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "faults.ipynb",
        "import faulthandler\nfaulthandler.enable()",
        "%%step a\nx = 1",
    )
    run_warm(terminal, notebook)


def test_a_setup_printing_many_lines_keeps_them_all_in_order(initialised: Path, terminal) -> None:
    """2 MB of output, from Python and from a subprocess: the setup cell shows it as a kernel
    does (the terminal's 60 s limit also catches a record that grows slower with each line)."""
    notebook = write_notebook(
        initialised / "chatty.ipynb",
        "import subprocess\nfor row in range(32000):\n    print('row', row, 'parsed', '.' * 50)\n"
        "subprocess.run(['echo', 'unpacked'])\nprint('done')",
        "%%step a\nx = 1",
    )
    setup = shown(run_warm(terminal, notebook)["a"], "setup")
    assert setup.count("parsed") == 32000
    assert setup.endswith("row 31999 parsed " + "." * 50 + "\nunpacked\ndone\n")
