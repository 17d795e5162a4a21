"""Upkeep: ``image`` (Dockerfiles for the steps) and ``gc`` (what old runs leave)."""

from __future__ import annotations

from typing import Any

from .. import commands
from . import command, json_flag


def image_commands(group: Any) -> None:
    top = command(group, "image", None, "container images for steps that run elsewhere")
    actions = top.add_subparsers(title="actions", dest="action", metavar="ACTION", required=True)
    dockerfile = command(
        actions,
        "dockerfile",
        commands.image_dockerfile,
        "write a Dockerfile for a step image: stackmagic and the notebook's imports, pinned",
        prefix="image",
    )
    dockerfile.add_argument(
        "notebook",
        metavar="NOTEBOOK",
        nargs="?",
        help="the .ipynb file; in a notebook, default: this notebook (saved)",
    )
    dockerfile.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        default="Dockerfile",
        help="where to write it (default: Dockerfile; - prints it)",
    )
    dockerfile.add_argument(
        "--base",
        metavar="IMAGE",
        default=None,
        help="base image (default: python:X.Y-slim of this Python)",
    )
    dockerfile.add_argument(
        "--stack",
        metavar="NAME",
        help="the stack whose stores the steps use (default: the active one)",
    )
    dockerfile.add_argument("--force", action="store_true", help="replace an existing file")


def gc_command(group: Any) -> None:
    gc = command(
        group,
        "gc",
        commands.garbage_collect,
        "remove what stopped runs left behind and, if asked, old runs' artifacts",
    )
    gc.add_argument(
        "--older-than",
        type=commands.parse_cutoff,
        metavar="AGE|DATE",
        help="also collect the runs started before then: 30d, 12h, 2w ago, or a date (2026-01-31)",
    )
    gc.add_argument(
        "--keep-last",
        type=commands.parse_keep_last,
        metavar="N",
        help="also collect each pipeline's runs but its newest N (with --older-than: "
        "only those older too)",
    )
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be removed and how much it frees; delete nothing",
    )
    gc.add_argument(
        "--stack", metavar="NAME", help="the stack whose stores to clean (default: the active one)"
    )
    json_flag(gc)
