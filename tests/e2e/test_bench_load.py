"""The benchmark's load process against the running stack, small: its figures are only worth quoting
if it really reads balances, reserves and confirms, and counts what it got."""

from __future__ import annotations

import pytest

from bench.redemption import redemption_latency, run_load
from libs.platform.auth import Role, mint_token
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


async def test_the_read_load_keeps_its_rate_and_counts_every_answer(api: Api, rider: str) -> None:
    result = await run_load(
        "reads",
        {
            "url": f"{api.points_url}/v1/riders/{rider}/balance",
            "token": mint_token(api.settings, Role.RIDER, rider),
            "rate": 100,
            "seconds": 2,
            "connections": 4,
        },
    )

    assert result["count"] == 200
    assert result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


async def test_the_read_load_counts_refusals_as_errors(api: Api, rider: str) -> None:
    result = await run_load(
        "reads",
        {
            "url": f"{api.points_url}/v1/riders/{rider}/balance",
            "token": mint_token(api.settings, Role.RIDER, "someone-else"),
            "rate": 50,
            "seconds": 1,
        },
    )

    assert result["errors"] == result["count"] == 50


async def test_the_redemption_load_reserves_confirms_and_never_overdraws(api: Api) -> None:
    result = await redemption_latency(api.settings, riders=5, seconds=3, pause_s=0.5)

    # Each rider can afford 4 redemptions (3 s / 0.5 s - 2) and tries about 7: the burst and the
    # sessions' first ones are confirmed, the rest refused for lack of points, none overdrawn.
    assert result["burst_reserve"]["count"] == result["burst_confirm"]["count"] == 5
    assert result["confirm"]["count"] == 5 * 3
    assert result["refused_for_points"] == result["reserve"]["count"] - 5 * 3 > 0
    assert result["unexpected_statuses"] == {}
    assert result["lowest_balance"] == 0
    assert result["lowest_held"] == 0
