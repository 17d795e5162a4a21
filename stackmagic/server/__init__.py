"""The Jupyter server extension: stacks, components, flavors and runs over REST.

Enabled on install (``jupyter_server_config.d/stackmagic.json``); its handlers
live under ``/stackmagic/api/`` behind Jupyter's own authentication.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "stackmagic.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from .handlers import routes

    web_app = server_app.web_app
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"], server_app.root_dir))
    server_app.log.info("stackmagic: REST API at %sstackmagic/api/", web_app.settings["base_url"])
