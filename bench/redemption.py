"""Reserve and confirm latency with many riders at once, against a running stack."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import httpx

from libs.platform.auth import Role, mint_token
from libs.platform.settings import Settings


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


async def redemption_latency(settings: Settings, riders: int = 200, rounds: int = 5) -> dict[str, float]:
    """Each of ``riders`` riders, all at once, reserves a reward and its partner confirms the code,
    ``rounds`` times. Returns p50/p99 in ms and whether any balance went below zero."""
    url = f"http://{settings.host}:{settings.redemption_port}"
    points = f"http://{settings.host}:{settings.points_port}"
    tag = uuid.uuid4().hex[:6]
    operator = {"authorization": f"Bearer {mint_token(settings, Role.OPERATOR, 'bench')}"}
    partner_id, reward_id = f"bench-partner-{tag}", f"bench-reward-{tag}"
    limits = httpx.Limits(max_connections=riders, max_keepalive_connections=riders)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await http.post(
            f"{url}/v1/partners", headers=operator, json={"partner_id": partner_id, "name": "bench", "kind": "merchant"}
        )
        await http.post(
            f"{url}/v1/rewards",
            headers=operator,
            json={"reward_id": reward_id, "partner_id": partner_id, "title": "bench", "cost": 10, "active": True},
        )
        names = [f"bench-rider-{tag}-{i}" for i in range(riders)]
        # Each rider can afford rounds - 1 redemptions: the last reserve of each must be refused (409).
        await asyncio.gather(
            *(
                http.post(
                    f"{points}/v1/adjustments",
                    json={"rider_id": n, "amount": 10 * (rounds - 1), "reason": "bench"},
                    headers={**operator, "idempotency-key": f"{n}-grant"},
                )
                for n in names
            )
        )
        partner = {"authorization": f"Bearer {mint_token(settings, Role.PARTNER, partner_id)}"}
        reserve_ms: list[float] = []
        confirm_ms: list[float] = []
        refused = 0

        async def one_rider(name: str) -> None:
            nonlocal refused
            rider = {"authorization": f"Bearer {mint_token(settings, Role.RIDER, name)}"}
            for i in range(rounds):
                started = time.perf_counter()
                r = await http.post(
                    f"{url}/v1/redemptions",
                    json={"reward_id": reward_id},
                    headers={**rider, "idempotency-key": f"{name}-{i}"},
                )
                reserve_ms.append((time.perf_counter() - started) * 1000)
                if r.status_code == 409:
                    refused += 1
                    continue
                r.raise_for_status()
                started = time.perf_counter()
                c = await http.post(f"{url}/v1/partner/confirmations", json={"code": r.json()["code"]}, headers=partner)
                confirm_ms.append((time.perf_counter() - started) * 1000)
                c.raise_for_status()

        await asyncio.gather(*(one_rider(n) for n in names))
        balances = await asyncio.gather(*(http.get(f"{points}/v1/riders/{n}/balance", headers=operator) for n in names))
    lowest = min(b.json()["available"] for b in balances)
    return {
        "riders": riders,
        "reserves": len(reserve_ms),
        "confirms": len(confirm_ms),
        "refused_for_points": refused,
        "reserve_p50_ms": round(statistics.median(reserve_ms), 2),
        "reserve_p99_ms": round(percentile(reserve_ms, 99), 2),
        "confirm_p50_ms": round(statistics.median(confirm_ms), 2),
        "confirm_p99_ms": round(percentile(confirm_ms, 99), 2),
        "lowest_balance": lowest,
    }
