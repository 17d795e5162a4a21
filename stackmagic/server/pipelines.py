"""A notebook as a pipeline: ``GET /stackmagic/api/pipeline?notebook=PATH`` is
``stackmagic pipeline show PATH --json`` (its steps, and the parameters cell's names
and defaults, which the Lab's Run dialog starts from)."""

from __future__ import annotations

import tornado.web
from jupyter_server.auth.decorator import authorized

from .base import CommandHandler, refused, word


class PipelineHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        given = word(self.get_query_argument("notebook", None), "the notebook")
        notebook = (self.root / given).resolve()
        if not notebook.is_relative_to(self.root):
            raise refused("the notebook must be inside the server's folder")
        await self.answer(["pipeline", "show", str(notebook)])
