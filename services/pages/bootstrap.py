"""Composition root of the pages service: no database of its own; the browser calls the APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from libs.platform.http import create_app
from libs.platform.settings import Settings
from services.pages.entrypoints import web

VERSION = "0.1.0"


def build_app(settings: Settings) -> FastAPI:
    async def readiness() -> dict[str, bool]:
        return {"pages": True}  # serves files and templates only; the APIs report their own readiness

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_app(
        settings,
        "pages",
        "warmbee pages",
        VERSION,
        readiness,
        lifespan,
        description="The rider's phone page and the partner's counter page, in Chinese with an English switch.",
    )
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    return app
