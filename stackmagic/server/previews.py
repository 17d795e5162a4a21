"""Previews of a run's step outputs, read by the server through the run's own artifact store.

The browser cannot reach a bucket (and must not hold its keys), and an
artifact may be large: the server reads only what a preview shows.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from .base import CommandHandler, word
from .runs import run_and_store, step_of


class OutputPreviewHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str, step: str, name: str) -> None:
        await self.answer(
            lambda: output_preview(
                word(run_id, "the run"), word(step, "the step"), word(name, "the output")
            )
        )


def output_preview(run_id: str, step: str, name: str) -> dict[str, Any]:
    from ..previews import output_info, preview

    with run_and_store(run_id) as (record, store):
        outputs = step_of(record, step).outputs
        return preview(store, record.id, step, name, output_info(outputs, record.id, step, name))
