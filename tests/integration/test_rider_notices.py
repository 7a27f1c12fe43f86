"""Rider notices against the real test database and a real gateway process: awards summed per rider once
their window passes, each award told of once however often it is read and however many gatherers run;
redemptions confirmed and expired told at once, a held code warned of once; points about to lapse told
once per day, and never to a webhook; and the gateway's answer recorded (delivered, or tried again later)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from libs.platform.auth import Role
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications.domain.kinds import KINDS
from services.notifications.handlers import read_events, record_deliveries
from services.notifications.notices import make_due_notices, record_notices, send_due_notices
from services.notifications.sender import Sender
from services.notifications.store import SubscriptionStore
from services.points.domain.lapsing import today
from services.points.lapsing import warn_riders
from services.redemption.handlers import confirm, state_message
from tests.conftest import SPARE_PORTS
from tests.integration.test_lapsing import append, credit
from tests.integration.test_redemption import catalogue_entry, fund, hold, redemption
from tests.integration.test_webhook_deliveries import deliveries, subscribe

GATEWAY_PORT = SPARE_PORTS[3]


def award(rider: str, points: int, category: str = "volunteer_service", at: datetime | None = None) -> bytes:
    entry = uuid.uuid4().int % 10**12
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"entry-{entry}",
            "source": "warmbee/points",
            "type": "points.award.recorded",
            "subject": rider,
            "time": (at or datetime.now(UTC)).isoformat(),
            "data": {"entry_id": entry, "kind": "award", "amount": points, "category": category},
        }
    )


async def heard(db: Database, settings: Settings, batch: list[bytes]) -> int:
    """A batch of points-ledger messages as the worker's agent hears it."""
    return await record_notices(db, settings, [event for event, _ in read_events(batch)])


def at_once(settings: Settings, **changes: Any) -> Settings:
    """The test settings with a window that has always passed already (and notices to the test's gateway)."""
    return settings.model_copy(
        update={
            "notice_award_window_s": 0.0,
            "notify_gateway_url": f"http://127.0.0.1:{GATEWAY_PORT}/notices",
            **changes,
        }
    )


async def notices_of(db: Database, rider: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT notice_key, kind, body, status, attempts, last_error FROM rider_notice WHERE rider_id = $1"
            " ORDER BY notice_id",
            rider,
        )
    return [{**dict(r), "body": orjson.loads(r["body"])} for r in rows]


async def test_a_riders_awards_within_the_window_make_one_notice_of_their_sum(
    db: Database, settings: Settings, rider: str
) -> None:
    batch = [award(rider, 30), award(rider, 10, "safe_riding"), award(rider, 5)]
    waiting = at_once(settings, notice_award_window_s=3600.0)
    await heard(db, waiting, batch)
    await heard(db, waiting, batch)  # the batch read again after a crash before its acknowledgement
    await make_due_notices(db, waiting)
    assert await notices_of(db, rider) == []  # the window has not passed

    await make_due_notices(db, at_once(settings))
    await make_due_notices(db, at_once(settings))

    (notice,) = await notices_of(db, rider)
    assert notice["kind"] == "points.awarded"
    assert notice["body"]["text"] == "您获得 45 积分：志愿服务 35、安全骑行 10。"
    assert notice["body"]["text_en"] == "You earned 45 points: volunteer service 35, safe riding 10."
    assert notice["status"] == "pending"

    await heard(db, at_once(settings), [award(rider, 7)])
    await make_due_notices(db, at_once(settings))
    assert [n["body"]["text"] for n in await notices_of(db, rider)][1] == "您因志愿服务获得 7 积分。"


async def test_two_gatherers_at_once_tell_of_each_award_once(db: Database, settings: Settings) -> None:
    riders = [f"rider-{uuid.uuid4().hex[:10]}" for _ in range(20)]
    await heard(db, settings, [award(r, p) for r in riders for p in (3, 4)])

    await asyncio.gather(*(make_due_notices(db, at_once(settings)) for _ in range(4)))
    await make_due_notices(db, at_once(settings))  # whoever lost the race left the rest for the next step

    for r in riders:
        assert [n["body"]["text_en"] for n in await notices_of(db, r)] == ["You earned 7 points for volunteer service."]


async def test_an_old_award_heard_late_makes_no_notice(db: Database, settings: Settings, rider: str) -> None:
    await heard(db, settings, [award(rider, 30, at=datetime.now(UTC) - timedelta(days=3))])
    await make_due_notices(db, at_once(settings))
    assert await notices_of(db, rider) == []


async def test_a_confirmed_code_is_told_at_once_and_a_held_one_warned_of_once(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)
    first = await hold(db, settings, rider, reward)  # each expires in 24 h
    second = await hold(db, settings, rider, reward)
    held = [state_message(settings, first).value, state_message(settings, second).value]
    await heard(db, at_once(settings), held)
    await make_due_notices(db, at_once(settings))
    assert await notices_of(db, rider) == []  # warned of an hour before they expire: not yet
    warn_soon = at_once(settings, notice_expiry_warning_s=2 * 24 * 3600)  # a warning time already past
    await heard(db, warn_soon, held)  # heard again: each timer stays as it was first set
    await make_due_notices(db, warn_soon)
    assert await notices_of(db, rider) == []

    await confirm(db, settings, reward.partner_id, first.code)
    confirmed = await redemption(db, first.redemption_id)
    await heard(db, warn_soon, [state_message(settings, confirmed).value] * 2)
    (told,) = await notices_of(db, rider)
    assert told["notice_key"] == f"redemption.confirmed-{first.redemption_id}"
    assert told["body"]["text"] == "您在老王面馆兑换的「午餐套餐」已确认，使用 30 积分。"


async def test_a_held_code_is_warned_of_once_when_its_warning_time_comes(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)
    held = await hold(db, settings, rider, reward)
    warn_soon = at_once(settings, notice_expiry_warning_s=2 * 24 * 3600)  # its warning time has come
    await heard(db, warn_soon, [state_message(settings, held).value])

    await asyncio.gather(make_due_notices(db, warn_soon), make_due_notices(db, warn_soon))
    await make_due_notices(db, warn_soon)

    (warned,) = await notices_of(db, rider)
    assert warned["notice_key"] == f"redemption.expiring-{held.redemption_id}"
    assert warned["body"]["text"].startswith("您在老王面馆兑换「午餐套餐」的兑换码将于 ")
    assert warned["body"]["text"].endswith(" 过期，请在此前使用；过期后 30 积分将退回。")


async def test_a_code_confirmed_before_its_warning_time_is_never_warned_of(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)
    held = await hold(db, settings, rider, reward)
    await heard(db, at_once(settings, notice_expiry_warning_s=2 * 24 * 3600), [state_message(settings, held).value])
    await confirm(db, settings, reward.partner_id, held.code)  # its event not heard yet

    await make_due_notices(db, at_once(settings, notice_expiry_warning_s=2 * 24 * 3600))

    assert await notices_of(db, rider) == []


# --- points about to lapse -----------------------------------------------------------------------


async def warnings_of(db: Database, settings: Settings, rider: str, now: datetime | None = None) -> list[bytes]:
    """The lapse job's warnings, as its outbox holds them for points-ledger: every rider's are made (the
    job is the whole database's), this rider's are read."""
    while await warn_riders(db, settings, now) > 0:
        pass
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT value FROM outbox WHERE topic = $1 AND key = $2 ORDER BY outbox_id",
            settings.topic_points_ledger,
            rider.encode(),
        )
    return [bytes(r["value"]) for r in rows]


async def test_points_about_to_lapse_are_told_once_per_day_and_never_to_a_webhook(
    db: Database, settings: Settings, rider: str
) -> None:
    day = today(datetime.now(UTC))
    soon, later = day + timedelta(days=20), day + timedelta(days=25)
    await append(db, credit(rider, 30, soon), credit(rider, 12, soon), credit(rider, 1, later))
    warnings = await warnings_of(db, settings, rider)
    assert len(warnings) == 2  # one per rider and day
    # A subscription whose row names the kind (the API would refuse it) still hears nothing of it.
    everything = await subscribe(db, Role.OPERATOR, "ops", [*KINDS, "points.lapsing"])
    try:
        for _ in range(2):  # read again after a crash before the acknowledgement
            await record_deliveries(db, warnings)
            await heard(db, at_once(settings), warnings)
        assert await deliveries(db, everything) == []
    finally:
        await db.run(lambda conn: SubscriptionStore(conn).delete(everything))

    told = await notices_of(db, rider)
    assert [(n["kind"], n["status"], n["body"]["text"]) for n in told] == [
        ("points.lapsing", "pending", f"您有 42 分将于 {soon.year}年{soon.month}月{soon.day}日 过期，请及时使用。"),
        ("points.lapsing", "pending", f"您有 1 分将于 {later.year}年{later.month}月{later.day}日 过期，请及时使用。"),
    ]
    assert told[1]["body"]["text_en"].startswith("1 point of yours lapses after ")
    assert [n["notice_key"] for n in told] == [f"points.lapsing-{orjson.loads(w)['id']}" for w in warnings]


async def test_a_lapsing_warning_heard_days_late_is_told_while_its_day_is_ahead(
    db: Database, settings: Settings, rider: str
) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    await append(db, credit(rider, 30, today(two_days_ago) + timedelta(days=20)))
    (warning,) = await warnings_of(db, settings, rider, now=two_days_ago)  # the notifications were down since
    assert await heard(db, at_once(settings), [warning]) == 1
    assert len(await notices_of(db, rider)) == 1


# --- the gateway ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(settings: Settings) -> Iterator[str]:
    """`warmbee gateway`, a real process on a port of its own."""
    env = {**settings.as_env(), "WARMBEE_NOTIFY_GATEWAY_PORT": str(GATEWAY_PORT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "gateway"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{GATEWAY_PORT}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {process.stdout.read() if process.stdout else ''!r}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_notices_reach_the_gateway_signed_and_are_delivered_once(
    db: Database, settings: Settings, rider: str, gateway: str
) -> None:
    await heard(db, settings, [award(rider, 12)])
    await make_due_notices(db, at_once(settings))
    async with Sender(lambda url: _none(), timeout_s=5) as sender:
        while await send_due_notices(db, at_once(settings), sender, 100):
            pass

    (notice,) = await notices_of(db, rider)
    assert (notice["status"], notice["attempts"]) == ("delivered", 1)
    async with httpx.AsyncClient() as http:
        received = (await http.get(f"{gateway}/notices", params={"rider_id": rider})).json()
    assert [(n["id"], n["text"]) for n in received] == [(notice["notice_key"], "您因志愿服务获得 12 积分。")]


async def test_a_gateway_that_refuses_the_signature_gets_the_notice_again_later(
    db: Database, settings: Settings, rider: str, gateway: str
) -> None:
    await heard(db, settings, [award(rider, 12)])
    await make_due_notices(db, at_once(settings))
    wrong = at_once(settings, notify_gateway_secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    async with Sender(lambda url: _none(), timeout_s=5) as sender:
        await send_due_notices(db, wrong, sender, 100)

    (notice,) = await notices_of(db, rider)
    assert (notice["status"], notice["attempts"], notice["last_error"]) == ("pending", 1, "receiver answered 401")


async def _none() -> None:
    return None
