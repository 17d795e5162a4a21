"""Artifact store throughput and run listing speed, next to raw baselines in the same run.

    python benchmarks/artifact_store.py [--repeat 5] [--mib 256] [--step-runs 100000]

Needs the test extras (``pip install -e ".[test]"``) for the S3 emulator.
Everything happens in a temporary folder and on 127.0.0.1.

* **Local folder:** ``ArtifactStore.save``/``load`` of a float64 array next to
  ``np.save``/``np.load`` of the same array to a file on the same disk.
* **S3 (moto server):** ``ArtifactStore.save``/``load`` next to raw fsspec
  ``put_file``/``get_file`` of the same ``.npy`` bytes, already on disk: the
  baseline moves the bytes and nothing else.
* **Run listing:** a SQLite metadata store holding ``--step-runs`` step runs
  (10 steps a run), built here with bulk inserts; ``MetadataStore.runs()``, what
  ``stackmagic pipeline runs`` shows, next to the bare SQL query for the newest
  20 runs.

Every measurement is the median of ``--repeat`` rounds, each with fresh files;
whether stackmagic or the baseline goes first alternates from round to round.
Throughput ratios are baseline time / stackmagic time (target: at least
0.8x); the listing target is at most 0.2 s. A report: nothing fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from stackmagic.stores.artifacts import ArtifactStore
from stackmagic.stores.metadata import MetadataStore

THROUGHPUT_TARGET = 0.8
LISTING_TARGET_SECONDS = 0.2


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def timed_in_turn(
    number: int, baseline: dict[str, Callable[[], object]], ours: dict[str, Callable[[], object]]
) -> dict[str, float]:
    """Time each action; who goes first alternates by round (an emulator slows as it serves)."""
    actions = {**baseline, **ours} if number % 2 else {**ours, **baseline}
    return {name: timed(action) for name, action in actions.items()}


def median_times(repeat: int, round_: Callable[[int], dict[str, float]]) -> dict[str, float]:
    rounds = [round_(number) for number in range(repeat)]
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


def report(label: str, ours: float, baseline: float, mib: int) -> None:
    ratio = baseline / ours
    verdict = "meets" if ratio >= THROUGHPUT_TARGET else "MISSES"
    print(
        f"  {label:<28} stackmagic {ours:6.3f} s ({mib / ours:7.0f} MiB/s)   "
        f"baseline {baseline:6.3f} s ({mib / baseline:7.0f} MiB/s)   "
        f"ratio {ratio:4.2f}x ({verdict} {THROUGHPUT_TARGET}x)"
    )


def local_round(folder: Path, array: np.ndarray) -> Callable[[int], dict[str, float]]:
    store = ArtifactStore(str(folder / "store"))

    def round_(number: int) -> dict[str, float]:
        raw = folder / f"raw-{number}.npy"
        saved: list = []
        baseline = {"raw save": lambda: np.save(raw, array), "raw load": lambda: np.load(raw)}
        ours = {
            "save": lambda: saved.append(store.save(array, store.uri(f"a{number}"))),
            "load": lambda: store.load(saved[0].uri),
        }
        times = timed_in_turn(number, baseline, ours)
        raw.unlink()
        Path(saved[0].uri).unlink()
        return times

    return round_


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def s3_round(folder: Path, array: np.ndarray, endpoint: str) -> Callable[[int], dict[str, float]]:
    import s3fs

    options = {"key": "bench", "endpoint_url": endpoint}
    fs = s3fs.S3FileSystem(secret="bench", **options)
    fs.mkdir("bench")
    store = ArtifactStore("s3://bench/store", options, secret_options={"secret": "bench"})
    source = folder / "array.npy"
    np.save(source, array)

    def round_(number: int) -> dict[str, float]:
        copy = folder / f"copy-{number}.npy"
        saved: list = []
        raw = {
            "raw put": lambda: fs.put_file(str(source), f"bench/raw/{number}.npy"),
            "raw get": lambda: fs.get_file(f"bench/raw/{number}.npy", str(copy)),
        }
        ours = {
            "save": lambda: saved.append(store.save(array, store.uri(f"a{number}"))),
            "load": lambda: store.load(saved[0].uri),
        }
        times = timed_in_turn(number, raw, ours)
        copy.unlink()
        fs.rm([f"bench/raw/{number}.npy", saved[0].uri])
        return times

    return round_


def build_runs(path: Path, step_runs: int) -> str:
    """A metadata store with ``step_runs`` step runs of 10-step runs, inserted in bulk."""
    url = f"sqlite:///{path}"
    MetadataStore(url).close()
    runs = step_runs // 10
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with sqlite3.connect(path) as database:
        database.execute(
            "INSERT INTO pipelines (id, name, created_at) VALUES (1, 'bench', ?)",
            (start.isoformat(" "),),
        )
        database.executemany(
            "INSERT INTO runs (id, pipeline_id, notebook, status, started_at, ended_at, stack_name,"
            " stack, bundle_uri, bundle_hash, options) VALUES (?, 1, 'bench.ipynb', 'completed', "
            "?, ?, 'default', '{}', 'b', 'h', '{}')",
            (
                (
                    f"run-{n:07d}",
                    (start + timedelta(seconds=n)).replace(tzinfo=None).isoformat(" "),
                    (start + timedelta(seconds=n + 1)).replace(tzinfo=None).isoformat(" "),
                )
                for n in range(runs)
            ),
        )
        database.executemany(
            "INSERT INTO step_runs (run_id, name, position, status, attempts) "
            "VALUES (?, ?, ?, 'completed', 1)",
            ((f"run-{n:07d}", f"step{p}", p) for n in range(runs) for p in range(10)),
        )
    return url


def listing(folder: Path, step_runs: int, repeat: int) -> None:
    url = build_runs(folder / "metadata.db", step_runs)
    store = MetadataStore(url)
    newest = None

    def round_(_: int) -> dict[str, float]:
        nonlocal newest
        found: list = []
        times = {"runs()": timed(lambda: found.extend(store.runs(limit=20)))}
        newest = found[0].id
        with sqlite3.connect(folder / "metadata.db") as database:
            times["bare SQL"] = timed(
                lambda: database.execute(
                    "SELECT * FROM runs ORDER BY started_at DESC LIMIT 20"
                ).fetchall()
            )
        return times

    times = median_times(repeat, round_)
    store.close()
    verdict = "meets" if times["runs()"] <= LISTING_TARGET_SECONDS else "MISSES"
    print(
        f"  pipeline runs over {step_runs:,} step runs: {times['runs()'] * 1000:.1f} ms "
        f"(bare SQL {times['bare SQL'] * 1000:.1f} ms; ratio "
        f"{times['runs()'] / times['bare SQL']:.1f}x; {verdict} {LISTING_TARGET_SECONDS} s); "
        f"newest: {newest}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mib", type=int, default=256, help="array size (default 256 MiB)")
    parser.add_argument("--step-runs", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"median of {args.repeat}"
    )
    array = np.random.default_rng(0).random(args.mib * (1 << 20) // 8)
    folder = Path(tempfile.mkdtemp(prefix="stackmagic-bench-"))
    try:
        print(f"Local folder, a {args.mib} MiB array:")
        times = median_times(args.repeat, local_round(folder, array))
        report("save vs np.save", times["save"], times["raw save"], args.mib)
        report("load vs np.load", times["load"], times["raw load"], args.mib)
        print(f"S3 (moto server on 127.0.0.1), a {args.mib} MiB array:")
        with moto_server() as endpoint:
            times = median_times(args.repeat, s3_round(folder, array, endpoint))
        report("save vs fsspec put_file", times["save"], times["raw put"], args.mib)
        report("load vs fsspec get_file", times["load"], times["raw get"], args.mib)
        print("Run listing:")
        listing(folder, args.step_runs, args.repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
