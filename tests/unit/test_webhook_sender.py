"""The sender's pure parts: the signed headers, what an answer's status means, how a failure is described.
The attempts themselves are tested against real receivers in tests/integration/test_webhook_sender.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from services.notifications.domain.deliveries import Due
from services.notifications.sender import (
    MAX_ERROR_CHARS,
    USER_AGENT,
    Sender,
    answer_error,
    describe_failure,
    signed_headers,
)

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def _due(body: str = '{"id":"e-1","n":"积分"}') -> Due:
    return Due(
        delivery_id=7,
        webhook_id="wh-1",
        event_id="e-1",
        url="https://receiver.example/hook",
        body=body,
        attempts=2,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_signed_headers_are_standard_webhooks() -> None:
    now = datetime(2026, 12, 2, 9, 30, 15, 987_000, tzinfo=UTC)
    headers = signed_headers(_due(), SECRET, now)
    timestamp = str(int(now.replace(microsecond=0).timestamp()))
    expected = hmac.new(KEY, f"e-1.{timestamp}.".encode() + _due().body.encode(), hashlib.sha256).digest()
    assert headers == {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": "e-1",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_signed_headers_take_any_timezone_as_the_same_instant() -> None:
    now = datetime(2026, 12, 2, 17, 30, 15, tzinfo=timezone(timedelta(hours=8)))
    assert signed_headers(_due(), SECRET, now) == signed_headers(_due(), SECRET, now.astimezone(UTC))


def test_signed_headers_verify_with_the_library() -> None:
    due = _due()
    headers = signed_headers(due, SECRET, datetime.now(UTC))
    assert Webhook(SECRET).verify(due.body.encode(), headers) == {"id": "e-1", "n": "积分"}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (200, None),
        (201, None),
        (204, None),
        (299, None),
        (301, "redirects are not followed"),
        (302, "redirects are not followed"),
        (307, "redirects are not followed"),
        (400, "receiver answered 400"),
        (404, "receiver answered 404"),
        (500, "receiver answered 500"),
        (503, "receiver answered 503"),
    ],
)
def test_answer_error(status: int, error: str | None) -> None:
    assert answer_error(status) == error


def test_describe_timeouts() -> None:
    assert describe_failure(TimeoutError(), 10.0) == "timed out after 10 s"
    assert describe_failure(aiohttp.ServerTimeoutError("x"), 0.5) == "timed out after 0.5 s"
    assert describe_failure(aiohttp.ConnectionTimeoutError("x"), 0.5) == "timed out after 0.5 s"


def _raised_from(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:
        return exc


def test_describe_connection_refused_through_the_chain() -> None:
    exc = _raised_from(aiohttp.ClientConnectionError("Cannot connect to host"), ConnectionRefusedError(111, "refused"))
    assert describe_failure(exc, 10) == "connection refused"


def test_describe_tls() -> None:
    exc = _raised_from(
        aiohttp.ClientConnectionError("handshake"), ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version")
    )
    assert describe_failure(exc, 10).startswith("TLS: ")


def test_describe_anything_else_by_class_and_message_cut_short() -> None:
    assert describe_failure(aiohttp.ServerDisconnectedError(), 10) == ("ServerDisconnectedError: Server disconnected")
    assert describe_failure(aiohttp.ClientPayloadError(""), 10) == "ClientPayloadError"
    long = describe_failure(RuntimeError("x" * 1000), 10)
    assert len(long) == MAX_ERROR_CHARS
    assert long.startswith("RuntimeError: xxx")


async def _allow(url: str) -> str | None:
    return None


async def test_a_secret_that_cannot_sign_is_a_failure_that_does_not_show_it() -> None:
    async with Sender(_allow, timeout_s=1) as sender:
        outcome = await sender.attempt(_due(), "not base64 !!")
    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("cannot sign")
    assert "!!" not in outcome.error


async def test_an_address_check_that_raises_is_a_failure() -> None:
    async def broken(url: str) -> str | None:
        raise OSError("resolver down")

    async with Sender(broken, timeout_s=1) as sender:
        outcome = await sender.attempt(_due(), SECRET)
    assert not outcome.delivered
    assert outcome.error == "OSError: resolver down"


async def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Sender(_allow, in_flight_per_subscription=0)
    with pytest.raises(ValueError, match="positive"):
        Sender(_allow, timeout_s=0)
