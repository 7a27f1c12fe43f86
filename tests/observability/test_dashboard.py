"""The Grafana dashboard and its provisioning: valid, every panel a PromQL query promtool accepts,
on the provisioned data source; and every metric the dashboard and the alerts name is one the code defines."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.observability.promql import (
    GRAFANA_DIR,
    dashboard,
    dashboard_exprs,
    metric_names,
    names_used,
    plain_promql,
)

PANELS_AN_OPERATOR_OPENS_FIRST = {  # what the issue asks for, by a metric each must show
    "throughput": {"warmbee_events_received_total", "warmbee_events_scored_total"},
    "lag": {"warmbee_consumer_lag_messages"},
    "errors": {"warmbee_http_requests_total", "warmbee_dead_letters_total"},
    "points issued per category": {"warmbee_points_issued_total"},
    "points redeemed per partner kind": {"warmbee_points_redeemed_total"},
    "latency": {"warmbee_http_request_duration_seconds_bucket", "warmbee_scoring_delay_from_arrival_seconds_bucket"},
    # issue 17: deliveries by kind and outcome, attempt latency, the oldest pending, failing subscriptions
    "webhook deliveries": {"warmbee_webhook_deliveries_total"},
    "webhook attempt latency": {"warmbee_webhook_attempt_duration_seconds_bucket"},
    "oldest pending webhook delivery": {"warmbee_webhook_oldest_pending_age_seconds"},
    "failing webhook subscriptions": {"warmbee_webhook_failing_subscriptions"},
}
WEBHOOK_METRICS = set().union(*(names for what, names in PANELS_AN_OPERATOR_OPENS_FIRST.items() if "webhook" in what))


def datasource_uid() -> str:
    provisioned = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_the_dashboard_is_a_grafana_dashboard_with_unique_panels_on_the_grid() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]

    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 30
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert panel["type"] in ("timeseries", "stat", "row"), panel["title"]


def graphs() -> list[dict[str, Any]]:
    """The panels that show something: every one but the rows, which only head a group of them."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def rows() -> dict[str, list[dict[str, Any]]]:
    """Each row's title, with the panels below it up to the next row (an open row lists none itself)."""
    found: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] | None = None
    for panel in sorted(dashboard()["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            assert panel["collapsed"] is False, f"row {panel['title']!r}: keep it open"
            assert panel["panels"] == [], f"row {panel['title']!r}: an open row lists no panels of its own"
            assert (panel["gridPos"]["x"], panel["gridPos"]["w"], panel["gridPos"]["h"]) == (0, 24, 1)
            current = found.setdefault(panel["title"], [])
        elif current is not None:
            current.append(panel)
    return found


def test_no_two_panels_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_the_webhooks_row_holds_the_notifications_panels() -> None:
    webhooks = rows()["Webhooks"]
    shown = set().union(*(metric_names(t["expr"]) for p in webhooks for t in p["targets"]))
    assert shown >= WEBHOOK_METRICS
    # and no webhook panel strays outside its row
    for panel in graphs():
        if panel not in webhooks:
            named = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
            assert not any(n.startswith("warmbee_webhook_") for n in named), panel["title"]


def test_every_panel_has_a_promql_target_on_the_provisioned_prometheus() -> None:
    uid = datasource_uid()
    for panel in graphs():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == uid
            assert metric_names(target["expr"]), f"{panel['title']!r}: {target['expr']} names no metric"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_the_dashboard_has_the_panels_an_operator_opens_first() -> None:
    shown = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for what, metrics in PANELS_AN_OPERATOR_OPENS_FIRST.items():
        assert metrics <= shown, f"no panel for {what}"


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool has no expression checker, so each query becomes a recording rule it checks."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make install` installs it (Debian's prometheus package)")
    rules = [{"record": f"warmbee:panel_query_{i}", "expr": plain_promql(e)} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))

    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_provider_loads_the_dashboards_directory() -> None:
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "warmbee.yml").read_text())
    (entry,) = provider["providers"]

    assert provider["apiVersion"] == 1
    assert entry["type"] == "file"
    assert entry["options"]["path"].endswith("/dashboards")
    assert (GRAFANA_DIR / "dashboards" / "warmbee.json").exists()


# Every process's metrics, registered on import in the default registry.
METRIC_MODULES = (
    "libs.platform.metrics",
    "services.events.entrypoints.api",
    "services.points.metrics",
    "services.redemption.metrics",
    "services.notifications.metrics",
)
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("_sum", "_count"),
}


def defined_series_names() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_every_metric_the_dashboard_and_the_alerts_name_is_defined_in_the_code() -> None:
    defined = defined_series_names() | {"up"}
    unknown = {name: sorted(where) for name, where in names_used().items() if name not in defined}

    assert unknown == {}


UNBOUNDED_LABELS = {"rider", "rider_id", "subject", "event_id", "id", "redemption_id", "code", "partner_id", "token"}


def test_no_metric_is_labelled_with_an_unbounded_value() -> None:
    defined_series_names()
    collectors = list(REGISTRY._collector_to_names)  # the registry has no public list of its collectors
    labelled = {
        name: set(getattr(c, "_labelnames", ())) for c in collectors for name in REGISTRY._collector_to_names[c]
    }

    assert {n: sorted(labels & UNBOUNDED_LABELS) for n, labels in labelled.items() if labels & UNBOUNDED_LABELS} == {}


def test_durations_are_in_seconds_and_warmbee_metrics_are_prefixed() -> None:
    for family in REGISTRY.collect():
        if family.name.startswith("warmbee_") and family.type == "histogram" and "duration" in family.name:
            assert family.name.endswith("_seconds"), family.name
        assert not family.name.endswith(("_milliseconds", "_ms")), family.name
