"""Work repeated in the background while a block runs: a heartbeat, a log copy."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def repeating(every: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Call ``action`` every ``every`` seconds in a thread until the block ends.

    ``action`` handles its own errors: a thread has nobody to raise them to.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            action()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
