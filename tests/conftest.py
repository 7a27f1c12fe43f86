"""Shared test configuration: a database and ports of their own, so tests never touch `make run`'s.

Integration and end-to-end tests use real PostgreSQL and a real broker; a skipped test fails the run.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import settings as hypothesis_settings

from libs.platform.settings import Settings

# `make test` draws the same examples every run, so main stays green on what it was green on; `make fuzz`
# explores new ones (random seeds, more examples) and prints a reproducing blob for what it finds.
hypothesis_settings.register_profile("repeatable", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("WARMBEE_HYPOTHESIS_PROFILE", "repeatable"))

# Another checkout's test run on the same machine picks other ports and databases with these two.
PORT_BASE = int(os.environ.get("WARMBEE_TEST_PORT_BASE", "18000"))
DB_SUFFIX = os.environ.get("WARMBEE_TEST_DB_SUFFIX", "")

TEST_ENV = {
    # env=local: the shared stack and the in-process apps take HS256 tokens minted by the tests (shared
    # secret tokens are refused in every other env); tests/e2e/test_identity.py runs a stack of env=test
    # against a real OpenID provider instead.
    "WARMBEE_ENV": "local",
    "WARMBEE_PG_DATABASE": f"warmbee_test{DB_SUFFIX}",
    "WARMBEE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT_BASE + 1092}",
    "WARMBEE_EVENTS_PORT": str(PORT_BASE + 1),
    "WARMBEE_POINTS_PORT": str(PORT_BASE + 2),
    "WARMBEE_REDEMPTION_PORT": str(PORT_BASE + 3),
    "WARMBEE_PAGES_PORT": str(PORT_BASE + 4),
    "WARMBEE_WORKER_METRICS_PORT": str(PORT_BASE + 12),
    "WARMBEE_NOTIFICATIONS_PORT": str(PORT_BASE + 5),
    "WARMBEE_NOTIFICATIONS_WORKER_METRICS_PORT": str(PORT_BASE + 15),
    "WARMBEE_NOTIFY_GATEWAY_PORT": str(PORT_BASE + 16),
    "WARMBEE_NOTICE_AWARD_WINDOW_S": "10",
    "WARMBEE_PROMETHEUS_PORT": str(PORT_BASE + 90),
    "WARMBEE_WORKER_BATCH_WAIT_MS": "50",
    "WARMBEE_RELAY_IDLE_MS": "20",
    "WARMBEE_EVENT_FUTURE_SLACK_S": "2",
    # A rules version may be published 4 s ahead (more than the 1 s reload plus the 2 s slack).
    "WARMBEE_RULES_RELOAD_S": "1",
    "WARMBEE_RULES_MIN_LEAD_S": "4",
    "WARMBEE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "WARMBEE_PENDING_AFTER_S": "5",
    "WARMBEE_PENDING_SWEEP_INTERVAL_S": "1",
    "WARMBEE_RECONCILE_INTERVAL_S": "10",
    # The lapse job runs once at the worker's start (catching up) and then daily: tests lapse by hand.
    "WARMBEE_LAPSE_INTERVAL_S": "86400",
    # The tests' webhook receivers listen on loopback, over http.
    "WARMBEE_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "WARMBEE_WEBHOOK_REQUIRE_HTTPS": "false",
}

# Ports a test may give a further replica it starts.
SPARE_PORTS = [PORT_BASE + n for n in (13, 14, 23, 24)]


@pytest.fixture(scope="session")
def settings() -> Settings:
    # As pydantic-settings reads the environment: a list is JSON.
    values = {
        k.removeprefix("WARMBEE_").lower(): json.loads(v) if v.startswith("[") else v for k, v in TEST_ENV.items()
    }
    return Settings.model_validate(values)


@pytest.fixture
def rider() -> str:
    """A rider id of its own for each test, so tests share one database without interfering."""
    return f"rider-{uuid.uuid4().hex[:12]}"


class _SkipsFail:
    """A skipped test is not a passed test: the run fails if anything was skipped."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SkipsFail(), "warmbee-skips-fail")
