"""Points worker processes in one consumer group, started by the benchmarks, and the wait until the
group has shared out every partition (read from the workers' own logs)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from libs.platform.localstack import LocalStack


@dataclass
class Worker:
    instance: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    log_start: int


ASSIGNED = re.compile(r"partition=(\d+)")


def current_assignment(worker: Worker) -> set[int] | None:
    """The partitions the worker last said it owns; None while it is between revoke and assign."""
    state: set[int] | None = None
    with worker.log.open("rb") as f:
        f.seek(worker.log_start)
        for line in f:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("msg") == "consumer.partitions_assigned":
                state = {int(p) for p in ASSIGNED.findall(" ".join(record.get("partitions", [])))}
            elif record.get("msg") == "consumer.partitions_revoked":
                state = None
    return state


async def wait_group_stable(workers: list[Worker], timeout_s: float = 90.0, partitions: int = 16) -> float:
    """Wait until every live worker owns its partitions and together they own all, once each."""
    started = time.monotonic()
    while True:
        owned = [current_assignment(w) for w in workers]
        if all(o is not None for o in owned):
            sets = [o for o in owned if o is not None]
            if sum(len(s) for s in sets) == partitions and set().union(*sets) == set(range(partitions)):
                return time.monotonic() - started
        for w in workers:
            if w.process.poll() is not None:
                raise RuntimeError(f"{w.instance} exited with {w.process.returncode}; see {w.log}")
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"consumer group not stable after {timeout_s} s: {owned}")
        await asyncio.sleep(0.25)


def start_worker(stack: LocalStack, instance: str, port: int, env: dict[str, str] | None = None) -> Worker:
    log = stack.log_dir / f"{instance}.log"
    start = log.stat().st_size if log.exists() else 0
    env = {**(env or {}), "WARMBEE_WORKER_METRICS_PORT": str(port)}
    process = stack.start_service("points-worker", env, instance=instance)
    return Worker(instance, port, process, log, start)
