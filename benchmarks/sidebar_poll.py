"""What the JupyterLab sidebar's once-a-second poll costs the Jupyter server, in the same run.

The sidebar asks for the stacks and the ten latest runs every second while it
is visible; that is how a `stack set` elsewhere shows within two seconds. This
starts a real `jupyter server` on 127.0.0.1 over a project with RUNS recorded
runs and times one poll against Jupyter's own cheapest listings (`/api/kernels`
and `/api/sessions`, which JupyterLab itself polls):

    python benchmarks/sidebar_poll.py [--runs 500] [--samples 50]

Prints the median of each, their ratio, and the worst wait before the sidebar
shows a change (the poll interval plus one poll).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TOKEN = "benchmark-token"
POLL_INTERVAL = 1.0
STEPS = ["load", "train", "evaluate"]
#: What two of the steps log, per run.
METRICS = {"train": ["loss", "lr_final"], "evaluate": ["accuracy", "f1", "loss"]}


def record_runs(project: Path, count: int) -> None:
    """Finished runs of three steps each, written straight into the default metadata store;
    half of them given a parameter, and two steps of each logging metrics, as the listing
    shows both."""
    from stackmagic.open_stack import OpenStack
    from stackmagic.registry import Registry
    from stackmagic.runtime import new_run_id

    os.chdir(project)
    Registry.init(project)
    with OpenStack.open(Registry.open()) as opened:
        for number in range(count):
            run_id = new_run_id()
            opened.metadata.create_run(
                run_id=run_id,
                pipeline=f"pipeline{number % 5}",
                notebook="train.ipynb",
                stack_name="default",
                stack={},
                bundle_uri="file:///bundle",
                bundle_hash="0" * 64,
                options={},
                parameters={"lr": 0.1 * (1 + number % 2), "epochs": 3},
                overridden=["lr"] if number % 2 else [],
                steps=STEPS,
            )
            for step, metrics in METRICS.items():
                opened.metadata.step_started(run_id, step, code_key="0" * 64, attempt=1)
                opened.metadata.step_completed(
                    run_id,
                    step,
                    code_key="0" * 64,
                    cache_key="0" * 64,
                    inputs={},
                    outputs={},
                    metrics=[(name, number / count) for name in metrics],
                    notebook_uri=f"file:///runs/{run_id}/{step}.ipynb",
                )
            opened.metadata.run_finished(run_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> None:
    with urllib.request.urlopen(
        f"{url}{'&' if '?' in url else '?'}token={TOKEN}", timeout=30
    ) as answer:
        answer.read()


def timed(base: str, paths: list[str], samples: int) -> float:
    """Median seconds for one round of the paths, asked at once as a browser does."""
    rounds = []
    with ThreadPoolExecutor(len(paths)) as pool:
        for _ in range(samples):
            start = time.perf_counter()
            list(pool.map(fetch, [base + path for path in paths]))
            rounds.append(time.perf_counter() - start)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="runs recorded in the project")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch) / "project"
        project.mkdir()
        os.environ["STACKMAGIC_HOME"] = str(Path(scratch) / "home")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(Path(scratch) / "runtime")
        record_runs(project, args.runs)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--IdentityProvider.token={TOKEN}",
                f"--ServerApp.root_dir={project}",
                "--allow-root",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    fetch(f"{base}/api/status")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            sidebar = ["/stackmagic/api/stacks", "/stackmagic/api/runs?limit=10"]
            jupyter = ["/api/kernels", "/api/sessions"]
            timed(base, sidebar + jupyter, 5)  # warm up: imports, the first connection
            ours = timed(base, sidebar, args.samples)
            baseline = timed(base, jupyter, args.samples)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"Jupyter's /api/kernels + /api/sessions  median {baseline * 1000:7.1f} ms "
        f"({args.samples} rounds)"
    )
    print(f"sidebar poll: stacks + 10 of {args.runs} runs median {ours * 1000:7.1f} ms")
    print(f"ratio sidebar poll / Jupyter's listings: {ours / baseline:.1f}x")
    print(f"server time spent on the poll: {ours / POLL_INTERVAL:.1%} of each second")
    print(
        f"worst wait before the sidebar shows a change: {POLL_INTERVAL + ours:.2f} s (target 2 s)"
    )


if __name__ == "__main__":
    main()
