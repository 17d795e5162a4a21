"""What every experiment tracker shares, with no tracker server: the stack member and its
grammar, the checks a stack makes of it, metric series as the metadata store keeps them, and
one twin per run when processes race to make it. MLflow and W&B themselves:
tests/test_tracker_mlflow.py and tests/test_tracker_wandb.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from services import Database

import stackmagic
from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.stores.metadata import MetadataStore
from stackmagic.stores.portable import wanted_secrets
from stackmagic.trackers.base import TrackedRun

EPOCHS = (
    "import stackmagic",
    "%%step train\nlosses = []\nfor epoch in range(4):\n    loss = round(1 / (epoch + 1), 3)\n"
    "    losses.append(loss)\n    stackmagic.log_metric('loss', loss, step=epoch)\n"
    "stackmagic.log_metric('accuracy', 0.9)",
)


def test_a_tracker_joins_and_leaves_a_stack_by_its_flag(initialised: Path, cli) -> None:
    said = [
        cli(
            "experiment-tracker", "register", "mlf", "--type=mlflow", "--tracking-uri=http://m:5000"
        ),
        cli("stack", "register", "tracked", "-m", "default", "-a", "default", "-o", "default"),
        cli("stack", "update", "tracked", "-e", "mlf"),
    ]
    assert [result.code for result in said] == [0, 0, 0], said
    described = json.loads(cli("stack", "describe", "tracked", "--json").out)
    tracker = described["components"][-1]
    assert (tracker["type"], tracker["name"], tracker["flavor"]) == (
        "experiment-tracker",
        "mlf",
        "mlflow",
    )
    listed = cli("stack", "list").out
    assert "experiment tracker" in listed.splitlines()[1] and "mlf" in listed

    used = cli("experiment-tracker", "delete", "mlf")
    assert used.code == 2 and "used by stack tracked" in used.err

    both = cli("stack", "update", "tracked", "-e", "mlf", "--no-experiment-tracker")
    assert both.code == 2 and both.err.count("\n") == 1
    assert "-e and --no-experiment-tracker contradict each other" in both.err
    assert cli("stack", "update", "tracked", "--no-experiment-tracker").code == 0
    stacks = json.loads(cli("stack", "list", "--json").out)
    assert (
        "experiment-tracker" not in next(s for s in stacks if s["name"] == "tracked")["components"]
    )
    assert "experiment tracker" not in cli("stack", "list").out, "no column while no stack has one"
    assert cli("experiment-tracker", "delete", "mlf").code == 0


@pytest.mark.parametrize(
    "options, reason",
    [
        (["--type=mlflow", "--tracking-uri=./mlruns"], "keeps runs on this machine"),
        (["--type=wandb", "--mode=offline"], "keeps runs on this machine"),
    ],
)
def test_steps_run_elsewhere_refuse_a_tracker_that_keeps_runs_here(
    initialised: Path, cli, options: list[str], reason: str
) -> None:
    for words in (
        ["experiment-tracker", "register", "here", *options],
        ["artifact-store", "register", "bucket", "--type=s3", "--path=s3://team/runs"],
        ["metadata-store", "register", "db", "--type=mysql", "--host=db", "--database=ml"],
        ["orchestrator", "register", "kf", "--type=kubeflow", "--host=https://kfp.example.org"],
    ):
        assert cli(*words).code == 0
    refused = cli("stack", "register", "team", "-m", "db", "-a", "bucket", "-o", "kf", "-e", "here")
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert reason in refused.err and "'here'" in refused.err
    assert "team" not in cli("stack", "list").out, "nothing registered"
    # the same tracker on a stack whose steps run here is fine
    kept = cli("stack", "register", "mine", "-m", "default", "-a", "default", "-o", "default")
    assert kept.code == 0 and cli("stack", "update", "mine", "-e", "here").code == 0


@pytest.mark.parametrize(
    "options, wrong",
    [
        (["--type=mlflow"], "needs --tracking-uri"),
        (
            ["--type=mlflow", "--tracking-uri=http://m", "--password=p"],
            "--password needs --username",
        ),
        (
            ["--type=mlflow", "--tracking-uri=http://m", "--token=t", "--username=u"],
            "--token or --username/--password, not both",
        ),
        (["--type=mlflow", "--tracking-uri=http://m", "--timeout=0"], "from 1 to 600 seconds"),
        (["--type=wandb", "--base-url=wandb.internal"], "http(s):// address"),
        (["--type=wandb", "--mode=later"], "one of online, offline"),
    ],
)
def test_bad_tracker_options_are_one_line(
    initialised: Path, cli, options: list[str], wrong: str
) -> None:
    refused = cli("experiment-tracker", "register", "t", *options)
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert wrong in refused.err
    assert json.loads(cli("experiment-tracker", "list", "--json").out) == []


def test_a_metric_series_keeps_its_steps_and_its_order(initialised: Path, cli) -> None:
    notebook = write_notebook(initialised / "epochs.ipynb", *EPOCHS)
    run = stackmagic.run(notebook)
    described = json.loads(cli("pipeline", "describe", run.id, "--json").out)
    assert described["steps"][0]["metrics"] == [
        {"name": "loss", "value": 1.0, "step": 0},
        {"name": "loss", "value": 0.5, "step": 1},
        {"name": "loss", "value": 0.333, "step": 2},
        {"name": "loss", "value": 0.25, "step": 3},
        {"name": "accuracy", "value": 0.9},
    ]
    assert described["metrics"] == {"loss": 0.25, "accuracy": 0.9}, "the last value of each"
    assert "loss=0.25 (last of 4), accuracy=0.9" in cli("pipeline", "describe", run.id).out
    record = run.record.step("train")
    assert [point.step for point in record.metric_history] == [0, 1, 2, 3, None]
    times = [point.logged_at for point in record.metric_history]
    assert all(times) and times == sorted(times), "when each value was logged, in order"

    cached = stackmagic.run(notebook)
    again = json.loads(cli("pipeline", "describe", cached.id, "--json").out)
    assert again["steps"][0]["status"] == "cached"
    assert again["steps"][0]["metrics"] == described["steps"][0]["metrics"]


@pytest.mark.parametrize("step", ["'1'", "-1", "1.5", "True"])
def test_a_metric_step_that_is_not_a_whole_number_is_refused(initialised: Path, step: str) -> None:
    notebook = write_notebook(
        initialised / "bad.ipynb",
        "import stackmagic",
        f"%%step s\nstackmagic.log_metric('m', 1, step={step})",
    )
    with pytest.raises(StackmagicError, match="step must be a whole number of 0 or more"):
        stackmagic.run(notebook)


def test_one_twin_per_run_when_processes_race_to_make_it(
    mysql_database: Database,
) -> None:
    store = MetadataStore(mysql_database.url)
    try:
        store.create_run(
            run_id="r1",
            pipeline="p",
            notebook="p.ipynb",
            stack_name="team",
            stack={},
            bundle_uri="b",
            bundle_hash="h",
            options={},
            parameters={},
            overridden=[],
            steps=["a", "b"],
        )

        def claim(number: int) -> TrackedRun:
            return store.claim_tracker_run("r1", f"twin-{number}", f"http://t/{number}")

        with ThreadPoolExecutor(8) as pool:
            kept = set(pool.map(claim, range(8)))
        assert len(kept) == 1, "every process links the run to the same twin"
        [twin] = kept
        record = store.run("r1")
        assert (record.tracker_run_id, record.tracker_url) == (twin.id, twin.url)
    finally:
        store.close()


def test_a_secret_without_the_trackers_variable_still_opens_the_stores() -> None:
    stores = {
        "metadata-store": {"options": {"password": "env:STACKMAGIC_METADATA_STORE_PASSWORD"}},
        "experiment-tracker": {"options": {"token": "env:STACKMAGIC_EXPERIMENT_TRACKER_TOKEN"}},
    }
    given = json.dumps({"STACKMAGIC_METADATA_STORE_PASSWORD": "pw"})
    assert wanted_secrets("team", given, stores) == {"STACKMAGIC_METADATA_STORE_PASSWORD": "pw"}
    both = json.dumps(
        {"STACKMAGIC_METADATA_STORE_PASSWORD": "pw", "STACKMAGIC_EXPERIMENT_TRACKER_TOKEN": "t"}
    )
    assert wanted_secrets("team", both, stores)["STACKMAGIC_EXPERIMENT_TRACKER_TOKEN"] == "t"
    with pytest.raises(StackmagicError, match="has no STACKMAGIC_METADATA_STORE_PASSWORD"):
        wanted_secrets("team", json.dumps({"STACKMAGIC_EXPERIMENT_TRACKER_TOKEN": "t"}), stores)


def test_the_tracker_is_a_magic_too(project: Path, tmp_path: Path, monkeypatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "stackmagic")
        for line in (
            "register mlf --type=mlflow --tracking-uri=http://mlflow.internal:5000 --token=-",
            "list",
        ):
            with capture_output() as captured:
                monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-token")
                shell.run_line_magic("experiment-tracker", line)
        [listing] = [output.data["text/html"] for output in captured.outputs]
        assert "mlf" in listing and "mlflow" in listing and "typed-token" not in listing
        shell.run_line_magic("stack", "update default -e mlf")
        with capture_output() as captured:
            shell.run_line_magic("stack", "describe")
        described = captured.outputs[0].data["text/html"]
        assert "Experiment tracker mlf" in described and "********" in described
    finally:
        InteractiveShell.clear_instance()
