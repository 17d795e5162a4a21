"""Runs compared: ``GET compare?run=A&run=B`` answers ``pipeline compare A B --json``."""

from __future__ import annotations

import tornado.web
from jupyter_server.auth.decorator import authorized

from .base import CommandHandler, word


class CompareHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        runs = [word(run, "each run") for run in self.get_query_arguments("run")]
        words = ["pipeline", "compare", *runs]
        if self.get_query_argument("metric", None):
            words += ["--metric", word(self.get_query_argument("metric"), "the metric")]
        await self.answer(words)
