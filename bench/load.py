"""A load process of its own, so the load does not share the benchmark's event loop.

Three workloads, each printing one JSON object on stdout:

- ``reads``: GET a URL (one rider's balance, or ``/healthz``) at a fixed rate (open loop). Every request
  has its moment on a schedule, and its latency counts from that moment, so a slow service cannot hide
  its queue by making the load wait (what wrk's closed loop does).
- ``raw-reads``: the same rider's balance row read straight from PostgreSQL on the same schedule, from 8
  pooled asyncpg connections: what the route is measured against, on the same machine at the same time.
- ``redemptions``: riders at once, each reserving a reward and its partner confirming the code, then
  pausing like a person at a counter; first a burst (every rider reserves at the same instant), then
  sessions for a while.

A minimal HTTP/1.1 client on asyncio streams with keep-alive: the clients of the ecosystem spend more
CPU per request than the service under test, on a machine where both share two cores.

Usage: python -m bench.load reads|raw-reads|redemptions CONFIG.json
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "count": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "max_ms": round(max(samples_ms, default=0.0), 2),
    }


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def again(self) -> Connection:
        """A new connection to the same replica, for one that failed."""
        return Connection(self._host, self._port)

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        reused = self._writer is not None
        try:
            return await self._request(method, path, headers, body)
        except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
            # A kept-alive connection the server closed while it idled (uvicorn's 5 s keep-alive) answers
            # nothing at all: sent again once on a new one, as HTTP clients do (the bench's writes carry
            # Idempotency-Keys). A connection that failed mid-answer, or a new one, is the caller's error.
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            self.close()
            return await self._request(method, path, headers, body)

    async def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, ms: float) -> None:
        self.latencies_ms.append(ms)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def open_loop(rate: float, seconds: float, one: Callable[[float], Coroutine[Any, Any, None]]) -> float:
    """Start ``one(due)`` at ``rate`` a second for ``seconds``, each at its moment on the schedule
    whatever the earlier ones are doing; wait for all; the seconds it took."""
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.1
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def _rates(tally: Tally, rate: float, seconds: float, elapsed: float) -> dict[str, Any]:
    errors = sum(n for status, n in tally.statuses.items() if status >= 400)
    return {
        "rate": rate,
        "achieved_rate": round(len(tally.latencies_ms) / elapsed),
        "seconds": seconds,
        **summary(tally.latencies_ms),
        "errors": errors,
    }


def _replicas(config: dict[str, Any]) -> tuple[str, str, list[int]]:
    """Host, path and the ports of the service's replicas: ``url``'s port, and ``replica_ports`` beside it
    (the connections are spread over them in turn, as a load balancer in front of replicas does)."""
    parts = urlsplit(config["url"])
    ports = [parts.port or 80, *config.get("replica_ports", [])]
    return parts.hostname or "127.0.0.1", parts.path, ports


async def reads(config: dict[str, Any]) -> dict[str, Any]:
    """GET ``url`` at ``rate`` per second for ``seconds`` on up to ``connections`` connections."""
    host, path, ports = _replicas(config)
    rate, seconds = float(config["rate"]), float(config["seconds"])
    headers = {"Authorization": f"Bearer {config['token']}"}
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for n in range(int(config.get("connections", 64))):
        conn = Connection(host, ports[n % len(ports)])
        await conn.request("GET", "/healthz", {})  # connected before the clock starts
        idle.put_nowait(conn)
    tally = Tally()

    async def one(due: float) -> None:
        conn = await idle.get()
        try:
            status, _ = await conn.request("GET", path, headers)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            conn, status = conn.again(), 599
        idle.put_nowait(conn)
        tally.add(status, (time.perf_counter() - due) * 1000)

    return _rates(tally, rate, seconds, await open_loop(rate, seconds, one))


async def raw_reads(config: dict[str, Any]) -> dict[str, Any]:
    """The limit the balance route is measured against: the same rider's ``rider_balance`` row read
    straight from PostgreSQL at ``rate`` a second for ``seconds``, from ``connections`` pooled asyncpg
    connections, on the same open-loop schedule."""
    import asyncpg

    rate, seconds = float(config["rate"]), float(config["seconds"])
    pool = await asyncpg.create_pool(config["dsn"], min_size=8, max_size=int(config.get("connections", 8)))
    assert pool is not None
    tally = Tally()
    query = "SELECT available, held, earned_total, redeemed_total, updated_at FROM rider_balance WHERE rider_id = $1"

    async def one(due: float) -> None:
        try:
            async with pool.acquire() as conn:
                await conn.fetchrow(query, config["rider_id"])
            status = 200
        except (OSError, asyncpg.PostgresError):
            status = 599
        tally.add(status, (time.perf_counter() - due) * 1000)

    try:
        return _rates(tally, rate, seconds, await open_loop(rate, seconds, one))
    finally:
        await pool.close()


async def redemptions(config: dict[str, Any]) -> dict[str, Any]:
    """Each rider of ``riders`` (name, token) reserves ``reward_id`` and the partner confirms the code.
    First a burst, all at the same instant; then sessions of reserve, confirm and a pause of
    ``pause_s`` on average, for ``seconds``. A reserve refused for lack of points (409) is counted
    apart: riders are granted fewer points than they try to spend."""
    host, _, ports = _replicas(config)
    partner = {"Authorization": f"Bearer {config['partner_token']}", "Content-Type": "application/json"}
    body = json.dumps({"reward_id": config["reward_id"]}).encode()
    burst, burst_confirm, reserve, confirm = Tally(), Tally(), Tally(), Tally()
    refused = 0

    async def redeem(conn: Connection, rider: dict[str, str], key: str, reserves: Tally, confirms: Tally) -> None:
        nonlocal refused
        headers = {"Authorization": f"Bearer {rider['token']}", "Content-Type": "application/json"}
        started = time.perf_counter()
        status, answer = await conn.request("POST", "/v1/redemptions", headers | {"Idempotency-Key": key}, body)
        reserves.add(status, (time.perf_counter() - started) * 1000)
        if status == 409:
            refused += 1
            return
        if status != 201:
            return
        code = json.dumps({"code": json.loads(answer)["code"]}).encode()
        started = time.perf_counter()
        status, _ = await conn.request("POST", "/v1/partner/confirmations", partner, code)
        confirms.add(status, (time.perf_counter() - started) * 1000)

    connections = {r["name"]: Connection(host, ports[n % len(ports)]) for n, r in enumerate(config["riders"])}
    for conn in connections.values():  # connected before the clock starts, as phones keep theirs
        await conn.request("GET", "/healthz", {})
    await asyncio.gather(
        *(redeem(connections[r["name"]], r, f"{r['name']}-burst", burst, burst_confirm) for r in config["riders"])
    )
    deadline = time.perf_counter() + float(config["seconds"])
    pause = float(config["pause_s"])

    async def session(rider: dict[str, str]) -> None:
        rng = random.Random(rider["name"])  # noqa: S311 - think times, not secrets
        await asyncio.sleep(rng.uniform(0, pause))
        n = 0
        while time.perf_counter() < deadline:
            await redeem(connections[rider["name"]], rider, f"{rider['name']}-{n}", reserve, confirm)
            n += 1
            await asyncio.sleep(rng.uniform(0.5 * pause, 1.5 * pause))

    started = time.perf_counter()
    await asyncio.gather(*(session(r) for r in config["riders"]))
    elapsed = time.perf_counter() - started
    for conn in connections.values():
        conn.close()
    unexpected = {
        str(status): n
        for tally in (burst, burst_confirm, reserve, confirm)
        for status, n in tally.statuses.items()
        if status not in (200, 201, 409)
    }
    return {
        "riders": len(config["riders"]),
        "burst_reserve": summary(burst.latencies_ms),
        "burst_confirm": summary(burst_confirm.latencies_ms),
        "reserve": summary(reserve.latencies_ms),
        "confirm": summary(confirm.latencies_ms),
        "requests_per_s": round((len(reserve.latencies_ms) + len(confirm.latencies_ms)) / elapsed),
        "refused_for_points": refused,
        "unexpected_statuses": unexpected,
    }


def main() -> None:
    workload, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        config = json.load(f)
    run = {"reads": reads, "raw-reads": raw_reads, "redemptions": redemptions}[workload]
    gc.collect()
    gc.freeze()  # the load's own pauses must not show as the service's latency
    gc.set_threshold(100_000, 50, 1000)
    print(json.dumps(asyncio.run(run(config))))


if __name__ == "__main__":
    main()
