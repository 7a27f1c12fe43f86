"""HTTP entrypoint of the pages service: the rider's page, the partner's page, QR codes, static files."""

from __future__ import annotations

import io
import re
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import urlsplit

import segno
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from libs.i18n.language import TAGS, Language
from libs.platform.errors import DomainError
from libs.platform.http import AppSettings, problem_responses
from libs.platform.settings import Settings
from services.pages.i18n import words

HERE = FilePath(__file__).resolve().parents[1]
STATIC = HERE / "static"  # mounted at /static by the bootstrap
QR_PAYLOAD = re.compile(r"^WARMBEE1:[0-9A-Z]{8}$")
LanguageQuery = Annotated[str, Query(max_length=8, description="zh (the default) or en; anything else is zh")]

router = APIRouter()
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
)


def language(asked: str) -> Language:
    """The page's language from ``?lang=``: Chinese, the programme's own, unless English is asked for."""
    return "en" if asked.lower().startswith("en") else "zh"


# The APIs each page talks to: the operator's console also reads the events service's dead letters.
PAGE_APIS: dict[str, tuple[str, ...]] = {
    "rider": ("points", "redemption"),
    "partner": ("points", "redemption"),
    "operator": ("points", "redemption", "events"),
}


def api_urls(settings: Settings, apis: tuple[str, ...] = ("points", "redemption")) -> dict[str, str]:
    """Where the browser finds the APIs: the same host as the pages, the services' ports."""
    ports = {"points": settings.points_port, "redemption": settings.redemption_port, "events": settings.events_port}
    return {name: f"http://{settings.host}:{ports[name]}" for name in apis}


def provider_sign_in(settings: Settings, name: str) -> dict[str, str] | None:
    """What the console's script needs to sign an operator in at the programme's OpenID provider
    (authorization code with PKCE), or None: other pages, or no provider and console client configured."""
    if name != "operator" or not (settings.console_client_id and settings.auth_issuer and settings.auth_audience):
        return None
    return {
        "issuer": settings.auth_issuer.rstrip("/"),
        "client_id": settings.console_client_id,
        "audience": settings.auth_audience,
        "role_claim": settings.auth_role_claim,
    }


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(urls: dict[str, str], also: tuple[str, ...] = ()) -> dict[str, str]:
    """Scripts and styles only from here, and the browser may talk to the page's APIs (and, for the
    console, the OpenID provider's discovery and token endpoints, ``also``) and nothing else (downloads
    are made from blob: URLs of what those APIs sent)."""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {' '.join([*urls.values(), *also])}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def page(settings: Settings, name: str, lang: Language, role: str) -> HTMLResponse:
    urls = api_urls(settings, PAGE_APIS[name])
    oidc = provider_sign_in(settings, name)
    t = words(lang)
    html = TEMPLATES.get_template(f"{name}.html").render(
        t=t,
        lang=lang,
        html_lang=TAGS[lang],
        other_lang="en" if lang == "zh" else "zh",
        # tag: the BCP 47 tag the scripts send as Accept-Language and format dates with
        config={"role": role, "lang": lang, "tag": TAGS[lang], "api": urls, "words": t, "oidc": oidc},
    )
    also = (origin(oidc["issuer"]),) if oidc else ()
    return HTMLResponse(html, headers={**security_headers(urls, also), "Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def index() -> RedirectResponse:
    return RedirectResponse("/rider", status_code=307)


@router.get(
    "/rider",
    response_class=HTMLResponse,
    tags=["pages"],
    summary="The rider's phone page (token in the fragment: /rider#token=...)",
)
async def rider_page(settings: AppSettings, lang: LanguageQuery = "zh") -> HTMLResponse:
    return page(settings, "rider", language(lang), "rider")


@router.get(
    "/partner",
    response_class=HTMLResponse,
    tags=["pages"],
    summary="The partner's counter page (token in the fragment: /partner#token=...)",
)
async def partner_page(settings: AppSettings, lang: LanguageQuery = "zh") -> HTMLResponse:
    return page(settings, "partner", language(lang), "partner")


@router.get(
    "/operator",
    response_class=HTMLResponse,
    tags=["pages"],
    summary="The sub-district's console (sign in at the OpenID provider, or paste a token; never in the address)",
)
async def operator_page(settings: AppSettings, lang: LanguageQuery = "zh") -> HTMLResponse:
    return page(settings, "operator", language(lang), "operator")


@router.get(
    "/qr/{payload}.svg",
    tags=["pages"],
    summary="The QR code of a redemption's payload (WARMBEE1:<code>) as SVG",
    response_class=Response,
    responses={200: {"description": "SVG", "content": {"image/svg+xml": {}}}, **problem_responses(422)},
)
async def qr(payload: Annotated[str, Path(max_length=17, pattern=QR_PAYLOAD.pattern)]) -> Response:
    if not QR_PAYLOAD.match(payload):
        raise DomainError("payload: WARMBEE1: and an 8-character code", kind="invalid-payload")
    out = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(out, kind="svg", scale=8, border=2, xmldecl=False)
    # A live code is a bearer of points: not kept by caches.
    return Response(out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
