"""Reading a W&B run folder as W&B's sync would: its ``.wandb`` log of protobuf records."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def records(log: Path) -> Iterator[Any]:
    """The records of a W&B run's ``.wandb`` log: 32 KiB blocks of chunks (a 7-byte header:
    CRC-32 of kind and data, length, kind) after a 7-byte file header, each record a
    protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    data = log.read_bytes()
    assert data.startswith(b":W&B"), f"{log} is not a W&B run log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        if room < 7:  # the rest of a block too short for a chunk header: padding
            position += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:  # zeros to the end of the block
            position += room
            continue
        chunk = data[position + 7 : position + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"{log}: damaged at {position}"
        pending += chunk
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_run(folder: Path) -> dict[str, Any]:
    """What a W&B run folder holds, as a user would see it once synced."""
    (log,) = folder.glob("run-*.wandb")
    seen: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "artifacts": []}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            seen.update(
                group=record.run.run_group,
                name=record.run.display_name,
                job_type=record.run.job_type,
                project=record.run.project,
                tags=list(record.run.tags),
            )
            seen["config"].update(
                {u.key: json.loads(u.value_json) for u in record.run.config.update}
            )
        elif kind == "history":
            seen["history"].append(
                {"/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            for update in record.summary.update:
                seen["summary"]["/".join(update.nested_key) or update.key] = json.loads(
                    update.value_json
                )
        elif kind == "artifact":
            contents = {entry.path: entry.ref for entry in record.artifact.manifest.contents}
            seen["artifacts"].append((record.artifact.type, record.artifact.name, contents))
        elif kind == "exit":
            seen["exit_code"] = record.exit.exit_code
    return seen
