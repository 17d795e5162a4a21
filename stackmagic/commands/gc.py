"""``stackmagic gc``: remove what stopped runs left behind and, when asked, old runs' artifacts.

Litter, removed by every ``gc``:

- temporary files in the artifact store (``.NAME.tmp-*``: an artifact a killed
  step was writing) untouched for ``LITTER_AGE``, outside running runs;
- stackmagic's folders in the temporary folder that no live process holds
  (see ``scratch``);
- outputs in a finished run's folder that its record never took in (a step
  killed as it saved them), untouched for ``LITTER_AGE``.

``--older-than`` and ``--keep-last`` collect runs: their folders are emptied
of all that no kept run uses (a cached step's outputs are the files of the run
that made them, so those stay), and their records are kept, marked collected.
What stayed of runs collected before and no kept run uses any more goes too.
Only runs the stack's metadata store records are touched, and never a running one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..output import Fields, Output, human_size
from ..registry import Registry

if TYPE_CHECKING:
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import RunSummary

#: How long a temporary file or an unrecorded output must lie untouched to count as litter:
#: a live writer changes its file all the time, and no step saves for an hour.
LITTER_AGE = timedelta(hours=1)
#: Files removed per request to the store (a bucket deletes them in one call).
_CHUNK = 200
#: Collected runs named one by one in the text; JSON names them all.
_RUNS_SHOWN = 20

#: What gc removes, as JSON names it and as the text says it.
KINDS = {
    "temporary_files": "temporary files in the artifact store",
    "temporary_folders": "stackmagic folders in the temporary folder",
    "unrecorded_outputs": "outputs no run recorded",
    "collected_artifacts": "artifacts of collected runs",
}


def parse_cutoff(text: str) -> datetime:
    """``--older-than``: an age (``30d``, ``12h``, ``2w``) or an ISO date or time (local unless
    it says otherwise)."""
    age = re.fullmatch(r"(\d{1,9})([hdw])", text.strip())
    try:
        if age:
            unit = {"h": "hours", "d": "days", "w": "weeks"}[age[2]]
            return datetime.now(timezone.utc) - timedelta(**{unit: int(age[1])})
        moment = datetime.fromisoformat(text)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text} reaches back before the year 1") from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects an age such as 30d, 12h or 2w, or a date such as 2026-01-31, not {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def parse_keep_last(text: str) -> int:
    """``--keep-last``: how many of each pipeline's newest runs keep their artifacts."""
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise argparse.ArgumentTypeError(f"expects a whole number, 0 or more, not {text!r}")
    return int(text)


@dataclass
class _Plan:
    """What gc removes, by kind: store files (URI -> bytes), folders (path -> bytes), runs."""

    files: dict[str, dict[str, int]] = field(default_factory=dict)
    folders: dict[Path, int] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)

    def add(self, kind: str, uri: str, size: int) -> None:
        self.files.setdefault(kind, {})[uri] = size

    @property
    def count(self) -> int:
        return len(self.folders) + sum(len(found) for found in self.files.values())


def garbage_collect(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..scratch import abandoned_folders

    collecting = args.older_than is not None or args.keep_last is not None
    with OpenStack.open(Registry.open(), args.stack) as opened:
        store, metadata = opened.artifact_store, opened.metadata
        metadata.fail_abandoned_runs()  # a run whose process died is not running
        runs = metadata.run_summaries()
        chosen = _chosen(runs, args.older_than, args.keep_last) if collecting else []
        in_use = metadata.collect_runs([run.id for run in chosen], dry_run=args.dry_run)
        plan = _Plan(runs=chosen)
        _plan_store(plan, store, runs, {run.id for run in chosen}, in_use)
        plan.folders = abandoned_folders(LITTER_AGE.total_seconds())
        if not args.dry_run:
            _remove(plan, store, shown=not args.as_json)
    return _report(plan, dry_run=args.dry_run, collecting=collecting)


def _chosen(
    runs: Sequence[RunSummary], older_than: datetime | None, keep_last: int | None
) -> list[RunSummary]:
    """The runs to collect: finished, not collected yet, started before ``older_than`` and
    beyond the newest ``keep_last`` of their pipeline (both, when both are given)."""
    seen: Counter[str] = Counter()
    chosen = []
    for run in runs:  # newest first
        seen[run.pipeline] += 1
        if run.running or run.collected:
            continue
        if (keep_last is None or seen[run.pipeline] > keep_last) and (
            older_than is None or run.started_at < older_than
        ):
            chosen.append(run)
    return chosen


def _plan_store(
    plan: _Plan,
    store: ArtifactStore,
    runs: Sequence[RunSummary],
    chosen: set[str],
    in_use: set[str],
) -> None:
    """Sort the store's files into litter, collected artifacts and files that stay."""
    from ..stores.artifacts import is_temporary
    from ..stores.materializers import all_materializers

    extensions = {materializer.extension for materializer in all_materializers()}
    known = {(run.pipeline, run.id): run for run in runs}
    now = datetime.now(timezone.utc)

    def untouched(uri: str) -> bool:
        modified = store.modified(uri)
        return modified is not None and now - modified >= LITTER_AGE

    for uri, size in store.sizes(store.root).items():
        parts = uri[len(store.root) + 1 :].split("/")
        run = known.get((parts[0], parts[1])) if len(parts) > 2 else None
        if run is not None and run.running:
            continue
        if is_temporary(uri):
            if untouched(uri):
                plan.add("temporary_files", uri, size)
        elif run is None or uri in in_use:
            continue
        elif run.collected or run.id in chosen:
            plan.add("collected_artifacts", uri, size)
        elif _an_output(parts[2:], extensions) and untouched(uri):
            plan.add("unrecorded_outputs", uri, size)


def _an_output(inside_run: list[str], extensions: set[str]) -> bool:
    """Whether a path in a run's folder is where a step saves an output: STEP/NAME.EXT, or a
    file it wrote, STEP/files/... (logs, pages and notebooks are left alone)."""
    if len(inside_run) > 2:
        return inside_run[1] == "files"
    return len(inside_run) == 2 and inside_run[1].rpartition(".")[2] in extensions


def _remove(plan: _Plan, store: ArtifactStore, *, shown: bool) -> None:
    """Delete what the plan holds, with a bar on a terminal or in a notebook."""
    from tqdm.auto import tqdm

    uris = [uri for found in plan.files.values() for uri in found]
    with tqdm(
        total=plan.count,
        desc="gc",
        unit="item",
        file=sys.stderr,
        leave=False,
        disable=not shown or not (sys.stderr.isatty() or "ipykernel" in sys.modules),
    ) as bar:
        for chunk in _chunks(uris, _CHUNK):
            store.delete(chunk)
            bar.update(len(chunk))
        for folder in plan.folders:
            shutil.rmtree(folder, ignore_errors=True)
            bar.update(1)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _report(plan: _Plan, *, dry_run: bool, collecting: bool) -> Output:
    sizes = {
        kind: plan.files.get(kind, {})
        for kind in KINDS  # and what an earlier gc left
        if collecting or kind != "collected_artifacts" or kind in plan.files
    }
    sizes["temporary_folders"] = {str(folder): size for folder, size in plan.folders.items()}
    total = sum(sum(found.values()) for found in sizes.values())
    if dry_run:
        title = f"Would free {human_size(total)} (--dry-run: nothing was deleted)"
    else:
        title = f"Freed {human_size(total)}"
    fields = [
        (KINDS[kind], _count(kind, len(found), sum(found.values())))
        for kind, found in sizes.items()
    ]
    parts = []
    if collecting:
        runs = [(run.id, run.pipeline) for run in plan.runs]
        shown = runs[:_RUNS_SHOWN] + (
            [("...", f"and {len(runs) - _RUNS_SHOWN} more")] if len(runs) > _RUNS_SHOWN else []
        )
        verb = "to collect" if dry_run else "collected"
        parts.append(Fields(f"Runs {verb} ({len(runs)})", shown))
    data = {
        "dry_run": dry_run,
        "bytes": total,
        "kinds": {
            kind: {"count": len(found), "bytes": sum(found.values()), "items": list(found)}
            for kind, found in sizes.items()
        },
        "runs": [run.id for run in plan.runs],
    }
    return Fields(title, fields, data, parts)


def _count(kind: str, count: int, size: int) -> str:
    noun = "folder" if kind == "temporary_folders" else "file"
    return f"{count} {noun}{'' if count == 1 else 's'}, {human_size(size)}"
