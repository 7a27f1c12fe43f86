"""The Prometheus configuration and alert rules, checked by Prometheus's own promtool: an invalid
configuration or rule file fails `make test`, not production. Every alert is unit-tested firing and
quiet (deploy/prometheus/tests/), and the unit tests are shown to catch a weakened alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from libs.platform.localstack import prometheus_config
from libs.platform.settings import Settings
from tests.observability.promql import ALERTS, PROMETHEUS_DIR, RULE_TESTS, alert_rules


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make install` installs it (Debian's prometheus package)")
    return path


def run(promtool: str, *args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_pass_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", ALERTS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_container_configuration_passes_promtool_check_config(promtool: str) -> None:
    result = run(promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_configuration_rendered_from_settings_passes_promtool_check_config(
    promtool: str, settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(settings, scrape_interval_s=1))

    result = run(promtool, "check", "config", config)
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in yaml.safe_load(config.read_text())["scrape_configs"]
    }

    assert result.returncode == 0, result.stdout + result.stderr
    assert targets["warmbee-events"] == [f"{settings.host}:{settings.events_port}"]
    assert targets["warmbee-points"] == [f"{settings.host}:{settings.points_port}"]
    assert targets["warmbee-redemption"] == [f"{settings.host}:{settings.redemption_port}"]
    assert targets["warmbee-points-worker"] == [f"{settings.host}:{settings.worker_metrics_port}"]
    assert targets["warmbee-pages"] == [f"{settings.host}:{settings.pages_port}"]


def test_the_local_and_container_configurations_have_the_same_jobs() -> None:
    local = yaml.safe_load(prometheus_config(Settings()))
    container = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    # Locally the notifications worker sends the webhooks itself; deployed, senders of their own do.
    deployed_only = {"warmbee-notifications-sender"}
    assert [j["job_name"] for j in local["scrape_configs"]] == [
        j["job_name"] for j in container["scrape_configs"] if j["job_name"] not in deployed_only
    ]


def test_every_alert_passes_its_promtool_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", *RULE_TESTS)

    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests/"
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}

    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_says_what_to_do_and_how_bad_it_is() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


BROKEN_RULES = {
    "invalid PromQL": """
groups:
  - name: broken
    rules:
      - alert: Broken
        expr: sum by (topic (warmbee_consumer_lag_messages) > 1000
""",
    "no expression": """
groups:
  - name: broken
    rules:
      - alert: Broken
        for: 5m
""",
    "a duration that is not one": """
groups:
  - name: broken
    rules:
      - alert: Broken
        expr: up == 0
        for: five minutes
""",
    "an unknown field": """
groups:
  - name: broken
    rules:
      - alert: Broken
        expr: up == 0
        severity: critical
""",
}


@pytest.mark.parametrize("problem", BROKEN_RULES)
def test_a_broken_rule_file_is_rejected(promtool: str, tmp_path: Path, problem: str) -> None:
    rules = tmp_path / "broken.yml"
    rules.write_text(BROKEN_RULES[problem])

    result = run(promtool, "check", "rules", rules)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_a_broken_configuration_is_rejected(promtool: str, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: soon\nscrape_configs:\n  - job_name: x\n    static_configs: 7\n")

    result = run(promtool, "check", "config", config)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_a_configuration_whose_rule_file_is_broken_is_rejected(promtool: str, tmp_path: Path) -> None:
    (tmp_path / "alerts.yml").write_text(BROKEN_RULES["invalid PromQL"])
    config = tmp_path / "prometheus.yml"
    config.write_text((PROMETHEUS_DIR / "prometheus.yml").read_text())

    result = run(promtool, "check", "config", config)

    assert result.returncode != 0


def test_the_unit_tests_catch_a_weakened_alert(promtool: str, tmp_path: Path) -> None:
    """Raising the dead-letter threshold (one is enough to alert) must fail the rule tests."""
    text = ALERTS.read_text()
    weakened = text.replace(
        "sum(increase(warmbee_dead_letters_total[10m])) > 0", "sum(increase(warmbee_dead_letters_total[10m])) > 5"
    )
    assert weakened != text
    (tmp_path / "alerts.yml").write_text(weakened)
    (tmp_path / "tests").mkdir()
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)

    result = run(promtool, "test", "rules", *sorted((tmp_path / "tests").glob("*.yml")), cwd=tmp_path)

    assert result.returncode != 0
    assert "WarmbeeDeadLetters" in result.stdout + result.stderr
