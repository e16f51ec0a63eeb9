"""The dashboard: server-rendered pages at ``/ui`` over the store, with vendored assets only.

:func:`install_ui` mounts the pages and their static files on the service's app
and serves the OpenAPI docs (``/docs``) from the vendored Swagger UI, so no
page loads anything from the internet.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from agentkeep.config import Settings
from agentkeep.ui import auth, operations, runs, sessions, usage
from agentkeep.ui.auth import Signer
from agentkeep.ui.web import HERE

__all__ = ["install_ui"]

SWAGGER = "/ui/static/swagger-ui"


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Mount the dashboard (``/ui``), its static files and the offline ``/docs``."""
    app.state.ui_signer = Signer(settings.ui_secret)
    app.state.ui_usage_cache = usage.FiguresCache()
    for module in (auth, sessions, runs, usage, operations):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        )
