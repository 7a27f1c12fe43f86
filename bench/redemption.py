"""Reserve and confirm latency with many riders at once, against a running stack.

The stack gets a partner, a reward and riders with points; the load itself runs in a process of its
own (bench/load.py). Afterwards every rider's balance is read back: none may be below zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from libs.platform.auth import Role, mint_token
from libs.platform.settings import Settings

COST = 10


async def run_load(workload: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run bench/load.py in a process of its own and return what it measured."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(config, f)
        f.flush()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load", workload, f.name, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.load {workload} exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def redemption_latency(
    settings: Settings,
    riders: int = 200,
    seconds: float = 20.0,
    pause_s: float = 2.0,
    replica_ports: Sequence[int] = (),
    stock: int | None = None,
    around_load: AbstractAsyncContextManager[object] | None = None,
) -> dict[str, Any]:
    """``riders`` riders at once: a burst (all reserve at the same instant), then for ``seconds`` each
    reserves, has the code confirmed and pauses ``pause_s`` on average. Each rider is granted points
    for fewer redemptions than it attempts, so reserves refused for lack of points show the guard. The
    reward has ``stock`` a month (None: no limit). ``around_load`` is entered just around the load itself
    (after the grants, before the balances are read back): what it measures is the redemptions' own."""
    url = f"http://{settings.host}:{settings.redemption_port}"
    points = f"http://{settings.host}:{settings.points_port}"
    tag = uuid.uuid4().hex[:6]
    operator = {"authorization": f"Bearer {mint_token(settings, Role.OPERATOR, 'bench')}"}
    partner_id, reward_id = f"bench-partner-{tag}", f"bench-reward-{tag}"
    names = [f"bench-rider-{tag}-{i}" for i in range(riders)]
    affordable = max(int(seconds / pause_s) - 2, 1)  # attempts are about seconds / pause_s + 1 (the burst)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
        await http.post(
            f"{url}/v1/partners", headers=operator, json={"partner_id": partner_id, "name": "bench", "kind": "merchant"}
        )
        await http.post(
            f"{url}/v1/rewards",
            headers=operator,
            json={
                "reward_id": reward_id,
                "partner_id": partner_id,
                "title": "bench",
                "cost": COST,
                "stock_per_month": stock,
                "active": True,
            },
        )
        for n in names:
            r = await http.post(
                f"{points}/v1/adjustments",
                json={"rider_id": n, "amount": COST * affordable, "reason": "bench"},
                headers={**operator, "idempotency-key": f"{n}-grant"},
            )
            r.raise_for_status()
        async with around_load or contextlib.nullcontext():
            measured = await run_load(
                "redemptions",
                {
                    "url": url,
                    "replica_ports": list(replica_ports),
                    "reward_id": reward_id,
                    "partner_token": mint_token(settings, Role.PARTNER, partner_id),
                    "riders": [{"name": n, "token": mint_token(settings, Role.RIDER, n)} for n in names],
                    "seconds": seconds,
                    "pause_s": pause_s,
                },
            )
        balances = [(await http.get(f"{points}/v1/riders/{n}/balance", headers=operator)).json() for n in names]
    return {
        **measured,
        "lowest_balance": min(b["available"] for b in balances),
        "lowest_held": min(b["held"] for b in balances),
    }
