"""Points that lapse, end to end on the real stack: a rules version with a lapse policy in force for the
test's dates (seeded in the stack's own database with a past effective date, before every other version,
so no other test's events fall under it), awards, a hold over the lots' last day, a cancel, the lapse
(`warmbee lapse`, as the worker's job does it), the rider's history and balance in Chinese, reconcile
clean. The suite's last test replays the whole ledger, these lots included (their last days compared)."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.ledger.store import LedgerStore
from libs.platform.auth import Role
from libs.platform.db import Database
from libs.platform.localstack import ROOT, LocalStack
from services.points.domain.lapsing import today
from services.points.domain.rules import Rules
from services.points.rules_files import DEFAULT_RULES_FILE, read_rules_file
from services.points.store import PointsStore
from tests.e2e.conftest import Api, shanghai, shift
from tests.e2e.test_redemption import catalogue_entry, new_hold
from tests.e2e.test_rules_and_replay import warmbee
from tests.e2e.test_rules_api import as_yaml, document, post
from tests.lots import lot_credit

pytestmark = pytest.mark.e2e

LAPSING_RULES = "lapse-e2e"


@pytest.fixture(scope="module")
async def lapsing_rules(stack: LocalStack) -> Rules:
    """The default rules with a lapse policy, in force from 2021 until the default version (2024)."""
    default = read_rules_file(DEFAULT_RULES_FILE)
    rules = default.model_validate(
        default.model_dump()
        | {
            "rules_id": LAPSING_RULES,
            "version": 1,
            "effective_from": datetime.fromisoformat("2021-01-01T00:00:00+08:00"),
            "lapse": {"after_months": 12},
        }
    )
    db = Database(stack.settings)
    await db.open()
    try:
        await db.run(lambda conn: PointsStore(conn).publish_rules(rules, "tests/e2e/test_lapsing.py"))
    finally:
        await db.close()
    await asyncio.sleep(stack.settings.rules_reload_s + 0.5)  # every worker has reloaded its rules
    return rules


async def test_lots_are_held_given_back_and_lapse_once_what_is_left(
    stack: LocalStack, api: Api, lapsing_rules: Rules
) -> None:
    rider = f"rider-lapse-{uuid.uuid4().hex[:8]}"
    shifts = [
        shift(rider, 2, time=shanghai("2022-03-10")),  # 20 points, good until 2023-03-31
        shift(rider, 1, time=shanghai("2022-06-15")),  # 10 points, good until 2023-06-30
        shift(rider, 1, time=shanghai("2024-05-02")),  # 10 points under version 1: they never lapse
    ]
    assert (await api.publish(shifts, batch=True)).status_code == 202
    for event in shifts:
        scored = await api.wait_scored(event["source"], event["id"])
        assert scored["points"] == 10 * (2 if event is shifts[0] else 1)
    balance = await api.balance(rider)
    assert balance["available"] == 40
    assert balance["lapsing"] == [{"on": "2023-03-31", "points": 20}, {"on": "2023-06-30", "points": 10}]

    # A hold of 25 takes the soonest-lapsing lot whole and 5 of the next; held points do not lapse.
    _, reward_id = await catalogue_entry(api, cost=25)
    redemption = await new_hold(api, rider, reward_id)
    assert (await api.balance(rider))["lapsing"] == [{"on": "2023-06-30", "points": 5}]
    held_run = warmbee(stack, "lapse")
    assert held_run.returncode == 0, held_run.stderr
    assert [e["kind"] for e in await api.entries(rider)].count("lapse") == 0

    # The cancel gives the 25 back to the same lots; the next run lapses both lots, each once, whole.
    cancelled = await api.http.post(
        f"{api.redemption_url}/v1/redemptions/{redemption['redemption_id']}/cancel",
        headers=api.token(Role.RIDER, rider),
    )
    assert cancelled.status_code == 200, cancelled.text
    for _ in range(2):
        run = warmbee(stack, "lapse")
        assert run.returncode == 0, run.stderr
    balance = await api.balance(rider)
    assert (balance["available"], balance["held"], balance["lapsing"]) == (10, 0, [])

    r = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/entries",
        headers={**api.token(Role.RIDER, rider), "accept-language": "zh-CN"},
    )
    lapses = [e for e in r.json()["items"] if e["kind"] == "lapse"]
    awards = {e["event_id"]: e["entry_id"] for e in r.json()["items"] if e["kind"] == "award"}
    first, second = awards[shifts[0]["id"]], awards[shifts[1]["id"]]
    assert sorted((e["amount"], e["reason_code"]) for e in lapses) == [(-20, "lapse"), (-10, "lapse")]
    assert {e["reason"] for e in lapses} == {
        f"第 {first} 条记录（2022年3月10日获得）剩余 20 分，有效期至 2023年3月31日，已过期",
        f"第 {second} 条记录（2022年6月15日获得）剩余 10 分，有效期至 2023年6月30日，已过期",
    }
    assert {e["category"] for e in lapses} == {"volunteer_service"}

    reconciled = warmbee(stack, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "ok   every lot is what its credit and the entries that took from it make of it" in reconciled.stdout


async def test_rules_check_and_what_if_understand_a_lapse_policy(
    stack: LocalStack, api: Api, tmp_path: Path, lapsing_rules: Rules
) -> None:
    rider = f"rider-whatif-{uuid.uuid4().hex[:8]}"
    day = shanghai("2024-07-03")
    assert (await api.publish([shift(rider, 1, time=day)], batch=True)).status_code == 202
    candidate = document(rules_id="lapse-candidate", version=1, lapse={"end_of_year_after": 1})
    path = tmp_path / "candidate.yaml"
    path.write_bytes(as_yaml(candidate))

    checked = warmbee(stack, "rules", "check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "points lapse on 31 December, 1 year(s) after the award's year (Asia/Shanghai)" in checked.stdout
    assert "points awarded under it never lapse" in warmbee(stack, "rules", "check", str(DEFAULT_RULES_FILE)).stdout

    r = await post(api, "/v1/rules/what-if?from=2024-07-03&to=2024-07-04", as_yaml(candidate))
    assert r.status_code == 200, r.text
    lapsing = r.json()["lapsing"]
    assert lapsing["current"] == []  # version 1, in force then, lapses nothing
    assert lapsing["candidate"]
    assert all(x["on"] == "2025-12-31" for x in lapsing["candidate"])
    assert sum(x["points"] for x in lapsing["candidate"]) == r.json()["candidate"]


async def test_the_lapse_job_killed_mid_run_lapses_every_lot_once_when_run_again(stack: LocalStack) -> None:
    """SIGKILL `warmbee lapse` once its first pages have committed: the next run lapses the rest, no lot
    twice, and reconcile is clean."""
    riders = [f"rider-kill-{uuid.uuid4().hex[:8]}" for _ in range(600)]
    day = today(datetime.now(UTC)) - timedelta(days=1)
    credits = [lot_credit(r, 3 + n, day) for r in riders for n in range(10)]
    db = Database(stack.settings)
    await db.open()
    try:
        for i in range(0, len(credits), 1000):
            part = credits[i : i + 1000]
            await db.run(lambda conn: LedgerStore(conn).append(part))  # noqa: B023 (awaited at once)

        async def lapsed() -> int:
            async with db.read() as conn:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM ledger_transaction WHERE kind = 'lapse' AND rider_id = ANY($1::text[])",
                        riders,
                    )
                )

        env = {"PATH": "/usr/bin:/bin", **stack.settings.as_env()}
        job = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "lapse", cwd=ROOT, env=env)
        done = 0
        while done == 0 and job.returncode is None:  # until its first page has committed
            done = await lapsed()
        job.send_signal(signal.SIGKILL)
        assert await job.wait() == -signal.SIGKILL, "the job finished before it could be killed: give it more lots"
        assert 0 < done < len(credits)

        again = warmbee(stack, "lapse")
        assert again.returncode == 0, again.stderr
        assert await lapsed() == len(credits)
        async with db.read() as conn:
            left = await conn.fetchval(
                "SELECT coalesce(sum(available + held), 0) FROM rider_balance WHERE rider_id = ANY($1::text[])", riders
            )
        assert left == 0
    finally:
        await db.close()
    reconciled = warmbee(stack, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
