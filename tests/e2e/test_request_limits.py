"""What every service refuses before any route sees it, over real HTTP: a body over its limit (413, by
Content-Length or while a chunked body arrives, before authentication), a control character in any text
field (422 naming the field), and a method the path does not take (405 with Allow)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from libs.platform.auth import Role
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

CONTROL = {"NUL": "\x00", "newline": "\n", "DEL": "\x7f"}


def _url(api: Api, service: str) -> str:
    port = {
        "events": api.settings.events_port,
        "points": api.settings.points_port,
        "redemption": api.settings.redemption_port,
        "pages": api.settings.pages_port,
    }[service]
    return f"http://{api.settings.host}:{port}"


# (service, method, path, role, body, field): one valid request per free-text field of each service;
# the test puts a control character into `field`.
REWARD = {"reward_id": "r-1", "partner_id": "p-1", "title": "Free haircut", "cost": 100}
ADJUSTMENT = {"rider_id": "rider-1", "amount": 5, "reason": "a fix"}
PARTNER = {"partner_id": "p-1", "name": "Barber", "kind": "barber"}
TEXT_FIELDS: list[tuple[str, str, str, Role, dict[str, Any], str]] = [
    ("points", "POST", "/v1/adjustments", Role.OPERATOR, ADJUSTMENT, "reason"),
    ("points", "POST", "/v1/adjustments", Role.OPERATOR, ADJUSTMENT, "rider_id"),
    ("redemption", "POST", "/v1/partners", Role.OPERATOR, PARTNER, "name"),
    ("redemption", "POST", "/v1/partners", Role.OPERATOR, PARTNER, "partner_id"),
    ("redemption", "POST", "/v1/rewards", Role.OPERATOR, REWARD, "title"),
    ("redemption", "POST", "/v1/rewards", Role.OPERATOR, REWARD, "reward_id"),
    ("redemption", "POST", "/v1/rewards", Role.OPERATOR, REWARD, "partner_id"),
    ("redemption", "PUT", "/v1/rewards/r-1", Role.OPERATOR, REWARD, "title"),
    ("redemption", "POST", "/v1/redemptions", Role.RIDER, {"reward_id": "r-1"}, "reward_id"),
    ("redemption", "POST", "/v1/partner/confirmations", Role.PARTNER, {"code": "ABCD2345"}, "code"),
]  # fmt: skip


@pytest.mark.parametrize("char", list(CONTROL))
@pytest.mark.parametrize(
    ("service", "method", "path", "role", "body", "field"),
    TEXT_FIELDS,
    ids=[f"{s}-{m}-{p}-{f}" for s, m, p, _, _, f in TEXT_FIELDS],
)
async def test_a_control_character_in_a_text_field_is_a_422_naming_the_field(
    api: Api, service: str, method: str, path: str, role: Role, body: dict[str, Any], field: str, char: str
) -> None:
    sent = {**body, field: f"ab{CONTROL[char]}cd"}

    r = await api.http.request(
        method,
        _url(api, service) + path,
        json=sent,
        headers={**api.token(role, "ops-test" if role is Role.OPERATOR else "x-1"), "Idempotency-Key": "k-1"},
    )

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"] == [{"field": field, "reason": problem["errors"][0]["reason"]}]
    assert "control characters" in problem["errors"][0]["reason"]
    assert f"{field}: must not contain control characters" in problem["detail"]
    assert "remove it" in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/redemptions/ab%00cd", "path.redemption_id"),
        ("POST", "/v1/redemptions/ab%0Acd/cancel", "path.redemption_id"),
        ("GET", "/v1/partner/codes/ABCD%7F2345", "path.code"),
    ],
)
async def test_a_control_character_in_a_path_parameter_is_a_422_naming_it(
    api: Api, method: str, path: str, field: str
) -> None:
    r = await api.http.request(method, _url(api, "redemption") + path, headers=api.token(Role.PARTNER, "p-1"))

    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


async def test_an_idempotency_key_too_long_is_a_422_naming_it_and_a_control_character_never_arrives(
    api: Api,
) -> None:
    def adjust(key: str) -> Awaitable[httpx.Response]:
        return api.http.post(
            f"{api.points_url}/v1/adjustments",
            json=ADJUSTMENT,
            headers={**api.token_for_operator(), "Idempotency-Key": key},
        )

    long = await adjust("k" * 201)
    control = await adjust("k\x7f1")

    assert long.status_code == 422, long.text
    assert long.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert control.status_code == 400  # the HTTP server itself refuses a control character in a header


@pytest.mark.parametrize("cursor", ["ab\x00", "-1", "0x1f", "8000000000000000", "f" * 10_000])
async def test_a_cursor_that_was_not_written_by_us_is_a_422(api: Api, rider: str, cursor: str) -> None:
    r = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/entries", params={"cursor": cursor}, headers=api.token(Role.RIDER, rider)
    )

    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "query.cursor"


# A path of each service that takes a body (or, for pages, any path: the limit holds for every request).
BODY_PATHS = {
    "events": "/v1/events",
    "points": "/v1/adjustments",
    "redemption": "/v1/partners",
    "pages": "/rider",
}


def _limit(api: Api, service: str) -> int:
    return api.settings.max_body_bytes if service == "events" else api.settings.max_api_body_bytes


@pytest.mark.parametrize("service", list(BODY_PATHS))
async def test_a_body_over_the_limit_by_content_length_is_a_413_before_authentication(api: Api, service: str) -> None:
    body = b"x" * (_limit(api, service) + 1)

    r = await api.http.post(  # no token: the size is refused before anyone asks who sends it
        _url(api, service) + BODY_PATHS[service], content=body, headers={"content-type": "application/json"}
    )

    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "https://warmbee.dev/problems/body-too-large"
    assert f"larger than {_limit(api, service)} bytes" in r.json()["detail"]


# The pages take no body: a route that reads none answers before any of it arrives (405 here).
@pytest.mark.parametrize("service", ["events", "points", "redemption"])
async def test_a_chunked_body_is_refused_with_413_once_it_passes_the_limit(api: Api, service: str) -> None:
    limit = _limit(api, service)
    # The caller each route takes, so that the route reads the body (a source's events, an operator's rest).
    token = api.token(Role.SOURCE, "volunteer-platform") if service == "events" else api.token_for_operator()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: httpx sends it chunked
        for _ in range(limit // 16_384 + 2):
            yield b" " * 16_384

    try:
        r = await api.http.post(
            _url(api, service) + BODY_PATHS[service],
            content=chunks(),
            headers={**token, "content-type": "application/json"},
        )
    except httpx.WriteError:  # the server answered and closed before the client was done: look no further
        pytest.fail("the server closed the connection without a 413 the client could read")

    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "https://warmbee.dev/problems/body-too-large"


async def test_a_body_within_the_limit_is_read_as_before(api: Api) -> None:
    r = await api.http.post(
        f"{api.redemption_url}/v1/partners",
        json={"partner_id": "p-1", "name": "x" * 300, "kind": "barber"},  # too long a name, well within 64 KiB
        headers=api.token_for_operator(),
    )

    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "name"


@pytest.mark.parametrize(
    ("service", "method", "path", "allow"),
    [
        ("events", "DELETE", "/v1/events", "POST"),
        ("points", "DELETE", "/v1/adjustments", "POST"),
        ("points", "POST", "/v1/rules", "GET"),
        ("redemption", "DELETE", "/v1/redemptions", "GET, POST"),  # two routes of one path: both named
        ("redemption", "PATCH", "/v1/rewards/r-1", "PUT"),
        ("pages", "POST", "/rider", "GET"),
        ("pages", "DELETE", "/static/rider.js", "GET, HEAD"),
    ],
)
async def test_a_405_names_the_methods_the_path_takes(
    api: Api, service: str, method: str, path: str, allow: str
) -> None:
    r = await api.http.request(method, _url(api, service) + path, headers=api.token_for_operator())

    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"
