"""Tokens from a real OpenID provider: oidc-provider (tests/oidc/provider.mjs, installed by `make install`)
as a process, and an events service and a points API of env=test configured against it, beside the
session's stack (whose database, broker and points worker they share, so the added cost is four
processes). Source systems and riders get their tokens with the client credentials grant and a resource
indicator: JWT access tokens whose aud is warmbee's."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from playwright.async_api import Browser, Page, expect

from libs.platform.auth import Role, mint_token
from libs.platform.localstack import LocalStack
from tests.conftest import PORT_BASE
from tests.e2e.conftest import LOG_DIR, SHOTS, Api, eventually, shift

pytestmark = pytest.mark.e2e

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "oidc"
PROVIDER_PORT = PORT_BASE + 20
OTHER_PROVIDER_PORT = PORT_BASE + 21  # another issuer, signing with the very same keys
EVENTS_PORT = PORT_BASE + 25
POINTS_PORT = PORT_BASE + 26
PAGES_PORT = PORT_BASE + 27  # the operator console, signing in at the provider
REDEMPTION_PORT = PORT_BASE + 28
CONSOLE = f"http://127.0.0.1:{PAGES_PORT}/operator"  # the console client's one redirect URI
AUDIENCE = "https://api.warmbee.test"
RIDER = "rider-oidc-1001"  # a client of the provider (tests/oidc/provider.mjs): its tokens' sub


def signing_keys(generation: str) -> dict[str, Any]:
    """A private JWKS for the provider: one key of each type, named by ``generation``."""
    made = [
        (RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "rsa"),
        (ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())), "ec"),
        (OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate()), "ed"),
    ]
    return {"keys": [json.loads(jwk) | {"kid": f"{kind}-{generation}"} for jwk, kind in made]}


@dataclass
class OpenIdProvider:
    port: int
    keys_file: Path
    process: subprocess.Popen[bytes] | None = None
    console_redirect_uri: str | None = None  # set: the provider has the console as a client, and a login page

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, keys: dict[str, Any], token_ttl_s: int = 300) -> None:
        self.keys_file.write_text(json.dumps(keys))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(self.port), "AUDIENCE": AUDIENCE}
        env |= {"KEYS_FILE": str(self.keys_file), "TOKEN_TTL_S": str(token_ttl_s)}
        if self.console_redirect_uri:
            env["CONSOLE_REDIRECT_URI"] = self.console_redirect_uri
        with (LOG_DIR / f"oidc-provider-{self.port}.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["node", "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=out, stderr=out, start_new_session=True
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    async def token(self, http: httpx.AsyncClient, client: str, resource: str = AUDIENCE) -> str:
        r = await http.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "resource": resource},
            auth=(client, f"{client}-secret"),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    async def ready(self, http: httpx.AsyncClient) -> bool:
        # Its own process must be the one answering (not another left on the port by an earlier run).
        assert self.process is not None
        assert self.process.poll() is None, f"oidc-provider on {self.port} exited (is its port taken?)"
        try:
            return (await http.get(f"{self.issuer}/.well-known/openid-configuration")).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oidc-keys")


@pytest.fixture(scope="module")
async def provider(stack: LocalStack, keys_dir: Path) -> AsyncIterator[OpenIdProvider]:
    keys = signing_keys("1")
    main, other = (
        OpenIdProvider(PROVIDER_PORT, keys_dir / "keys.json", console_redirect_uri=CONSOLE),
        OpenIdProvider(OTHER_PROVIDER_PORT, keys_dir / "other.json"),
    )
    main.start(keys)
    other.start(keys)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for p in (main, other):
                await eventually(lambda p=p: p.ready(http), 30, f"oidc-provider on {p.port}")  # type: ignore[misc]
        yield main
    finally:
        main.stop()
        other.stop()


@pytest.fixture(scope="module")
async def services(stack: LocalStack, provider: OpenIdProvider) -> AsyncIterator[None]:
    """An events service, a points API, a redemption service and the pages (the operator console) of
    env=test: tokens from the provider only; the console signs in there."""
    env = {
        "WARMBEE_ENV": "test",
        "WARMBEE_AUTH_ISSUER": provider.issuer,
        "WARMBEE_AUTH_AUDIENCE": AUDIENCE,
        "WARMBEE_AUTH_LEEWAY_S": "1",
        "WARMBEE_AUTH_JWKS_MIN_REFRESH_S": "1",  # 60 s in production; the rotation test waits for it
        "WARMBEE_EVENTS_PORT": str(EVENTS_PORT),
        "WARMBEE_POINTS_PORT": str(POINTS_PORT),
        "WARMBEE_REDEMPTION_PORT": str(REDEMPTION_PORT),
        "WARMBEE_PAGES_PORT": str(PAGES_PORT),
        "WARMBEE_CONSOLE_CLIENT_ID": "warmbee-console",
    }
    instances = {"events": "events-oidc", "points-api": "points-oidc", "redemption": "redemption-oidc"}
    instances["pages"] = "pages-oidc"
    for service, instance in instances.items():
        stack.start_service(service, env, instance=instance)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for port in (EVENTS_PORT, POINTS_PORT, REDEMPTION_PORT, PAGES_PORT):
                await eventually(lambda port=port: _ready(http, port), 60, f"the env=test service on {port}")  # type: ignore[misc]
        yield
    finally:
        for instance in instances.values():
            await asyncio.to_thread(stack.stop, instance)


async def _ready(http: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def rules_as(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get(f"http://127.0.0.1:{POINTS_PORT}/v1/rules", headers=bearer(token))


async def test_a_source_posts_with_a_client_credentials_token_and_the_rider_reads_its_balance(
    api: Api, provider: OpenIdProvider, services: None
) -> None:
    source = await provider.token(api.http, "volunteer-platform")  # RS256
    event = shift(RIDER, 1)  # one hour: 2 half hours x 5 points
    posted = await api.http.post(
        f"http://127.0.0.1:{EVENTS_PORT}/v1/events",
        content=orjson.dumps(event),
        headers={**bearer(source), "content-type": "application/cloudevents+json"},
    )
    assert posted.status_code == 202, posted.text
    await api.wait_scored("volunteer-platform", event["id"])
    rider = await provider.token(api.http, RIDER)  # EdDSA, its role claim a list: ["rider"]
    assert jwt.get_unverified_header(rider)["alg"] == "EdDSA"
    balance = await api.http.get(f"http://127.0.0.1:{POINTS_PORT}/v1/riders/{RIDER}/balance", headers=bearer(rider))
    assert balance.status_code == 200, balance.text
    assert balance.json()["earned_total"] == 10
    other_rider = await api.http.get(
        f"http://127.0.0.1:{POINTS_PORT}/v1/riders/rider-{uuid.uuid4().hex[:8]}/balance", headers=bearer(rider)
    )
    assert other_rider.status_code == 403


async def test_a_source_token_is_not_a_source_of_another_name(
    api: Api, provider: OpenIdProvider, services: None
) -> None:
    grid = await provider.token(api.http, "grid-office")  # ES256, sub grid-office
    assert jwt.get_unverified_header(grid)["alg"] == "ES256"
    posted = await api.http.post(
        f"http://127.0.0.1:{EVENTS_PORT}/v1/events",
        content=orjson.dumps(shift(RIDER, 1)),  # source volunteer-platform
        headers={**bearer(grid), "content-type": "application/cloudevents+json"},
    )
    assert posted.status_code == 403, posted.text


async def test_an_operator_token_from_the_provider_reads_what_operators_read(
    api: Api, provider: OpenIdProvider, services: None
) -> None:
    operator = await provider.token(api.http, "ops-oidc")
    r = await api.http.get(f"http://127.0.0.1:{POINTS_PORT}/v1/riders?prefix=rider-oidc", headers=bearer(operator))
    assert r.status_code == 200, r.text


async def test_tokens_of_another_issuer_or_audience_or_without_a_role_are_refused(
    api: Api, provider: OpenIdProvider, services: None
) -> None:
    other_issuer = OpenIdProvider(OTHER_PROVIDER_PORT, Path("/dev/null"))
    refusals = {
        "Invalid issuer": await other_issuer.token(api.http, "ops-oidc"),  # same keys, same kid
        "Audience doesn't match": await provider.token(api.http, "ops-oidc", resource="https://elsewhere.example"),
        "claim 'role' must name one of": await provider.token(api.http, "canteen-app"),
    }
    for why, token in refusals.items():
        r = await rules_as(api.http, token)
        assert r.status_code == 401, (why, r.text)
        assert r.json()["type"] == "https://warmbee.dev/problems/invalid-token"
        assert why in r.json()["detail"]


async def test_hs256_tokens_are_refused_outside_local(api: Api, services: None) -> None:
    r = await rules_as(api.http, mint_token(api.settings, Role.OPERATOR, "ops-test"))
    assert r.status_code == 401
    assert "HS256 tokens are taken only where WARMBEE_ENV=local, not in env=test" in r.json()["detail"]


async def sign_in_at_the_provider(page: Page, login: str, shots: str | None = None) -> None:
    """From the console's sign-in card through the provider's login and consent pages, and back;
    ``shots``: a name for screenshots of the card and of the provider's login page."""
    await page.goto(CONSOLE)
    if shots:
        await page.screenshot(path=SHOTS / f"{shots}-card.png")
    await page.get_by_role("button", name="通过统一身份认证登录").click()
    await page.wait_for_url(f"http://127.0.0.1:{PROVIDER_PORT}/interaction/**")
    if shots:
        await page.screenshot(path=SHOTS / f"{shots}-provider.png")
    await page.locator("input[name=login]").fill(login)
    await page.locator("input[name=password]").fill("any password: the test provider takes any")
    await page.locator("button[type=submit]").click()
    await page.locator("button[type=submit]").click()  # the consent page: Continue
    await page.wait_for_url(CONSOLE)


async def test_an_operator_signs_in_to_the_console_at_the_provider_with_pkce(
    browser: Browser, provider: OpenIdProvider, services: None
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    await sign_in_at_the_provider(page, "ops-alice", shots="operator-signin")

    await expect(page.locator("#who-sub")).to_have_text("ops-alice")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)  # the overview loaded with the token
    assert page.url == CONSOLE  # nothing of the sign-in is left in the address
    token = await page.evaluate("sessionStorage.getItem('warmbee.operator.token')")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"], claims["role"]) == (
        provider.issuer,
        AUDIENCE,
        "ops-alice",
        "operator",
    )
    assert await page.evaluate("sessionStorage.getItem('warmbee.operator.signin')") is None
    authorize = next(u for u in asked if u.startswith(f"{provider.issuer}/auth?"))
    assert "code_challenge_method=S256" in authorize
    assert "response_mode=fragment" in authorize
    # The code came back in the fragment: the pages service never saw it, nor the token, in any request.
    console_requests = [u for u in asked if u.startswith(f"http://127.0.0.1:{PAGES_PORT}/")]
    assert not [u for u in console_requests if "code=" in u or token in u]
    assert "code=" not in (LOG_DIR / "pages-oidc.log").read_text()
    await page.get_by_role("tab", name="骑手").click()
    await page.get_by_label("骑手编号开头").fill("rider-oidc")
    await page.get_by_role("button", name="查找").click()
    await expect(page.locator("#who-sub")).to_have_text("ops-alice")  # the points API took the token
    assert errors == [], errors
    await context.close()


async def test_a_rider_signed_in_at_the_provider_or_a_stale_return_is_not_let_into_the_console(
    browser: Browser, provider: OpenIdProvider, services: None
) -> None:
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await sign_in_at_the_provider(page, "rider-bob")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#error")).to_have_text("这个令牌不能做这件事。")
    other_tab = await context.new_page()  # a return this tab did not start (its storage holds no verifier)
    await other_tab.goto(CONSOLE + "#code=made-up&state=not-this-tabs")
    stale = "这次登录已失效（在其他标签页发起，或等待太久），请重新登录。"
    await expect(other_tab.locator("#error")).to_have_text(stale)
    assert other_tab.url == CONSOLE
    await context.close()


async def test_a_rotated_signing_key_is_picked_up_without_restarting_the_services_and_its_tokens_expire(
    api: Api, provider: OpenIdProvider, services: None
) -> None:
    before = await provider.token(api.http, "ops-oidc")
    assert (await rules_as(api.http, before)).status_code == 200
    provider.stop()
    provider.start(signing_keys("2"), token_ttl_s=4)  # back with new keys only, and short-lived tokens
    await eventually(lambda: provider.ready(api.http), 30, "oidc-provider restarted")
    after = await provider.token(api.http, "ops-oidc")
    assert jwt.get_unverified_header(after)["kid"] == "rsa-2"

    async def accepted() -> bool:
        return (await rules_as(api.http, after)).status_code == 200

    await eventually(accepted, 10, "a token of the new key accepted")
    refused = await rules_as(api.http, before)  # verified and cached before; its key is gone now
    assert refused.status_code == 401
    assert "no key 'rsa-1'" in refused.json()["detail"]

    # The token of the new key, accepted (and cached) above, is refused once its exp (and the 1 s leeway) is past.
    await asyncio.sleep(max(0.0, jwt.decode(after, options={"verify_signature": False})["exp"] + 1.1 - time.time()))
    expired = await rules_as(api.http, after)
    assert expired.status_code == 401
    assert "Signature has expired" in expired.json()["detail"]
