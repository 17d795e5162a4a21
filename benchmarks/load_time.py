"""How long ``%load_ext stackmagic`` takes, next to ``import IPython``, in the same run.

Each sample is a fresh Python process, so nothing is cached in memory:

    python benchmarks/load_time.py [--runs 15]

Prints the median of each and their ratio; the target is that loading the
extension costs well under what importing IPython itself does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

IMPORT_IPYTHON = """
import time
start = time.perf_counter()
import IPython
print(time.perf_counter() - start)
"""

LOAD_EXTENSION = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
start = time.perf_counter()
shell.run_line_magic("load_ext", "stackmagic")
print(time.perf_counter() - start)
"""


def sample(code: str) -> float:
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs

    ipython, extension = [], []
    for _ in range(runs):  # interleaved, so both see the same machine load
        ipython.append(sample(IMPORT_IPYTHON))
        extension.append(sample(LOAD_EXTENSION))
    baseline, ours = statistics.median(ipython), statistics.median(extension)
    print(f"import IPython              median {baseline * 1000:7.1f} ms  ({runs} fresh processes)")
    print(f"%load_ext stackmagic       median {ours * 1000:7.1f} ms")
    print(f"ratio load_ext / import IPython: {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
