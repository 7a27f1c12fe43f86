"""`warmbee run` as a user runs it (a process of its own, on ports and a database of its own): the points
worker SIGKILLed under its supervision comes back by itself, says so, and scores what arrived meanwhile;
Ctrl-C then stops everything and starts nothing again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from libs.platform.auth import Role, mint_token
from libs.platform.db import drop_database
from libs.platform.settings import Settings
from tests.conftest import DB_SUFFIX, PORT_BASE
from tests.e2e.conftest import shift

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "test-artifacts" / "supervision" / "logs"
# Offsets from the test port base that no other test uses (tests/conftest.py has 1-5, 12-16, 23-24, 90, 1092).
PORTS = {
    "events_port": PORT_BASE + 41,
    "points_port": PORT_BASE + 42,
    "redemption_port": PORT_BASE + 43,
    "pages_port": PORT_BASE + 44,
    "worker_metrics_port": PORT_BASE + 52,
    "notifications_port": PORT_BASE + 45,
    "notifications_worker_metrics_port": PORT_BASE + 55,
    "notify_gateway_port": PORT_BASE + 56,
    "prometheus_port": PORT_BASE + 91,
}
STARTUP_S = 120  # migrations, seed, broker and eight services on a busy two-core machine


@dataclass
class Run:
    """A `warmbee run` process and what it printed so far."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def expect(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """Read the console until a line matches ``pattern`` (lines already read count too)."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=left)
            except TimeoutError:
                break
            if not raw:
                raise AssertionError(f"warmbee run ended before {pattern!r}; it printed:\n" + "\n".join(self.lines))
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if match := regex.search(line):
                return match
        raise AssertionError(f"no {pattern!r} within {timeout_s} s; warmbee run printed:\n" + "\n".join(self.lines))

    async def rest(self) -> list[str]:
        assert self.process.stdout is not None
        rest = (await self.process.stdout.read()).decode(errors="replace").splitlines()
        self.lines.extend(rest)
        return rest


def descendants(pid: int) -> dict[int, str]:
    """Processes started by ``pid``, with their command lines (Linux /proc; the children of `warmbee run`
    are session leaders of their own, so its process group does not reach them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                with contextlib.suppress(OSError):
                    found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


@pytest.fixture
def run_settings(settings: Settings) -> Settings:
    host = settings.host
    return settings.model_copy(
        update={
            **PORTS,
            "kafka_bootstrap": f"{host}:{PORT_BASE + 1093}",
            "pg_database": f"warmbee_supervised{DB_SUFFIX}",
        }
    )


@pytest.fixture
async def warmbee_run(run_settings: Settings) -> AsyncIterator[Run]:
    await drop_database(run_settings)
    for old_log in LOG_DIR.glob("*.log"):  # each process appends to its log: start this run's afresh
        old_log.unlink()
    env = {**os.environ, **run_settings.as_env(), "PYTHONUNBUFFERED": "1"}  # lines as they are printed
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "run",
        "--no-demo",
        "--log-dir",
        str(LOG_DIR),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    run = Run(process)
    started: dict[int, str] = {}
    try:
        await run.expect(r"Ctrl-C stops everything", STARTUP_S)
        started = descendants(process.pid)
        yield run
    finally:
        started |= descendants(process.pid) if process.returncode is None else {}
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
        for pid in started:  # whatever a failed test left behind must not hold the ports of the next run
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


async def test_the_points_worker_killed_under_warmbee_run_comes_back_by_itself_and_scores(
    warmbee_run: Run, run_settings: Settings, rider: str
) -> None:
    s = run_settings
    children = descendants(warmbee_run.process.pid)
    (worker,) = [pid for pid, command in children.items() if "services.cli worker points" in command]
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()

    # Accepted while no worker runs: it waits in the outbox, Kafka, or the pending sweep for the new one.
    event = shift(rider, 2, id=f"sup-{uuid.uuid4().hex[:12]}")
    events = f"http://{s.host}:{s.events_port}"
    points = f"http://{s.host}:{s.points_port}"
    async with httpx.AsyncClient(timeout=15) as http:
        accepted = await http.post(
            f"{events}/v1/events",
            content=orjson.dumps(event),
            headers={
                "authorization": f"Bearer {mint_token(s, Role.SOURCE, 'volunteer-platform')}",
                "content-type": "application/cloudevents+json",
            },
        )
        assert accepted.status_code == 202, accepted.text

        await warmbee_run.expect(r"^points-worker exited \(killed by SIGKILL\); restarting in 1 s \(restart 1\)$", 10)
        restarted = await warmbee_run.expect(r"^points-worker restarted \(pid (\d+)\)$", 10)
        new_worker = int(restarted.group(1))
        assert new_worker != worker
        assert "services.cli worker points" in descendants(warmbee_run.process.pid)[new_worker]

        operator = {"authorization": f"Bearer {mint_token(s, Role.OPERATOR, 'ops-test')}"}
        deadline = time.monotonic() + 45
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            r = await http.get(f"{points}/v1/events/volunteer-platform/{event['id']}", headers=operator)
            status = r.json() if r.status_code == 200 else {"http": r.status_code}
            if status.get("status") == "scored":
                break
            await asyncio.sleep(0.25)
        scored_after_s = time.monotonic() - killed_at
        assert status.get("status") == "scored", status
        print(f"scored {scored_after_s:.1f} s after the SIGKILL")

    log_lines = (LOG_DIR / "points-worker.log").read_bytes().splitlines()
    worker_log = [orjson.loads(line) for line in log_lines if line.startswith(b"{")]  # not a stray warning
    (restart_line,) = [line for line in worker_log if line.get("msg") == "supervisor.restarting"]
    assert (restart_line["exit"], restart_line["restart"], restart_line["delay_s"]) == ("killed by SIGKILL", 1, 1)

    # Ctrl-C: everything stops, and nothing stopped is taken for a death and started again.
    before = descendants(warmbee_run.process.pid)
    warmbee_run.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(warmbee_run.process.wait(), 60) == 0
    after_ctrl_c = await warmbee_run.rest()
    assert "stopped." in after_ctrl_c, after_ctrl_c
    assert not [line for line in after_ctrl_c if "restart" in line], after_ctrl_c
    assert [pid for pid in before if alive(pid)] == []
