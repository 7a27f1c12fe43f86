"""deploy/compose.yaml: valid against the Compose Specification schema, and coherent with itself and
with the code (services it depends on exist, WARMBEE_* names are real settings, topics as configured).

The schema is the compose-spec JSON schema vendored by check-jsonschema (``vendor.compose-spec``), so
this runs offline; no Docker engine is needed or used."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from libs.platform.settings import Settings
from tests.deploy.files import COMPOSE, DEPLOY, SETTING_VARIABLES, TOPICS, tool

WARMBEE_IMAGE = "warmbee:local"


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def load(path: Path = COMPOSE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def problems(compose: dict[str, Any]) -> list[str]:
    """What the schema cannot see: references between services, and the project's own rules."""
    found: list[str] = []
    services: dict[str, Any] = compose.get("services", {})
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            if dependency not in services:
                found.append(f"{name}: depends on {dependency}, which is not a service")
            elif rule.get("condition") == "service_healthy" and "healthcheck" not in services[dependency]:
                found.append(f"{name}: waits for {dependency} to be healthy, which has no health check")
        if service.get("image") == WARMBEE_IMAGE:
            unknown = sorted(
                k for k in service.get("environment", {}) if k.startswith("WARMBEE_") and k not in SETTING_VARIABLES
            )
            if unknown:
                found.append(f"{name}: {', '.join(unknown)} are not settings (libs/platform/settings.py)")
            one_shot = service.get("restart") == "no"
            if not one_shot and service.get("healthcheck", {}).get("disable"):
                found.append(f"{name}: a long-running service without a health check")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and not (DEPLOY / source).exists():
                found.append(f"{name}: mounts {source}, which does not exist")
    return found


def test_compose_file_is_valid_against_the_compose_specification():
    result = check_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def _misspell_healthcheck(compose: dict[str, Any]) -> None:
    compose["services"]["events"]["healtcheck"] = compose["services"]["events"].pop("healthcheck", {})


def _unknown_depends_on_condition(compose: dict[str, Any]) -> None:
    compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] = "service_healty"


def _memory_limit_as_a_list(compose: dict[str, Any]) -> None:
    compose["services"]["points-worker"]["deploy"]["resources"]["limits"]["memory"] = ["512M"]


@pytest.mark.parametrize(
    ("breakage", "reported"),
    [
        (_misspell_healthcheck, "'healtcheck'"),
        (_unknown_depends_on_condition, "service_healty"),
        (_memory_limit_as_a_list, "memory"),
    ],
)
def test_the_schema_check_rejects_a_broken_compose_file(tmp_path, breakage, reported):
    compose = load()
    breakage(compose)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    result = check_schema(broken)
    assert result.returncode == 1, result.stdout
    assert reported in result.stdout


def test_compose_file_has_no_dangling_references_or_unknown_settings():
    assert problems(load()) == []


def test_the_reference_check_finds_a_missing_service_and_a_misspelt_setting():
    compose = load()
    compose["services"]["events"]["depends_on"] = {"kafka-9": {"condition": "service_healthy"}}
    compose["services"]["points"]["environment"] = {"WARMBEE_PG_DATABSE": "warmbee"}
    assert problems(compose) == [
        "events: depends on kafka-9, which is not a service",
        "points: WARMBEE_PG_DATABSE are not settings (libs/platform/settings.py)",
    ]


def test_apache_kafka_runs_three_kraft_nodes_that_form_one_quorum():
    services = load()["services"]
    nodes = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:") and "hostname" in s}
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    for name, node in nodes.items():
        env = node["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = {v.split("@")[1].split(":")[0] for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
        assert voters == set(nodes), name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert "healthcheck" in node
    assert len({n["environment"]["KAFKA_NODE_ID"] for n in nodes.values()}) == 3


def test_topics_are_created_once_with_replication_three_and_two_in_sync_replicas():
    init = load()["services"]["kafka-init"]
    script = "\n".join(init["command"])
    assert set(init["environment"]["TOPICS"].split()) == TOPICS
    assert init["environment"]["PARTITIONS"] == "8"
    assert "--replication-factor 3" in script
    assert "--config min.insync.replicas=2" in script
    assert "--if-not-exists" in script
    assert {d["condition"] for d in init["depends_on"].values()} == {"service_healthy"}


def test_warmbee_services_run_one_image_with_the_production_settings_for_apache_kafka():
    services = load()["services"]
    commands = {n: tuple(s["command"]) for n, s in services.items() if s.get("image") == WARMBEE_IMAGE}
    assert commands == {
        "migrate": ("migrate",),
        "events": ("serve", "events"),
        "points": ("serve", "points"),
        "points-worker": ("worker", "points"),
        "redemption": ("serve", "redemption"),
        "pages": ("serve", "pages"),
        "notifications": ("serve", "notifications"),
        "notifications-worker": ("worker", "notifications"),
        "notifications-sender": ("worker", "notifications-sender"),
    }
    for name in commands:
        env = services[name]["environment"]
        assert env["WARMBEE_ENV"] == "production", name
        assert env["WARMBEE_KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
        assert "WARMBEE_JWT_SECRET" not in env, "HS256 is for env=local only"
        assert env["WARMBEE_AUTH_ISSUER"].startswith("${WARMBEE_AUTH_ISSUER:?"), "no default issuer"
        assert env["WARMBEE_AUTH_AUDIENCE"].startswith("${WARMBEE_AUTH_AUDIENCE:?"), "no default audience"
        assert services[name]["build"]["context"] == ".."


def test_services_start_after_the_migration_and_the_topics():
    services = load()["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in (
        "events",
        "points",
        "points-worker",
        "redemption",
        "notifications",
        "notifications-worker",
        "notifications-sender",
    ):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "kafka-init": {"condition": "service_completed_successfully"},
        }
        assert services[name]["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/docker/healthcheck.py"]


def test_the_points_worker_runs_three_replicas_in_one_group_without_host_ports():
    worker = load()["services"]["points-worker"]
    assert worker["deploy"]["replicas"] == 3
    assert "ports" not in worker
    assert "WARMBEE_POINTS_CONSUMER_GROUP" not in worker["environment"]  # one group: the default


def test_the_notifications_services_need_their_sealing_key_and_the_worker_and_senders_run_two_replicas():
    services = load()["services"]
    for name in ("notifications", "notifications-worker", "notifications-sender"):
        assert services[name]["environment"]["WARMBEE_NOTIFY_SECRET_KEY"].startswith("${WARMBEE_NOTIFY_SECRET_KEY:?")
    for name in ("notifications-worker", "notifications-sender"):
        assert services[name]["deploy"]["replicas"] == 2
        assert "ports" not in services[name]
    # The worker records and tells the riders; the senders send the webhooks.
    assert services["notifications-worker"]["environment"]["WARMBEE_NOTIFICATIONS_WORKER_SENDS_WEBHOOKS"] == "false"
    assert not any(k.startswith("WARMBEE_KAFKA_SASL") for k in services["notifications-sender"]["environment"])


def test_the_pages_service_waits_for_the_apis_its_browser_pages_call():
    pages = load()["services"]["pages"]
    assert pages["depends_on"] == {
        "points": {"condition": "service_healthy"},
        "redemption": {"condition": "service_healthy"},
    }
    assert pages["ports"] == ["127.0.0.1:8004:8004"]
    assert pages["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/docker/healthcheck.py"]


def test_postgres_is_version_15_with_a_health_check():
    postgres = load()["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_prometheus_and_grafana_read_their_configuration_from_deploy():
    services = load()["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]


def test_prometheus_scrapes_compose_services_by_their_names_and_ports():
    """deploy/prometheus/prometheus.yml (the observability side) names compose services and ports."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = load()["services"]
    ports = {
        ("serve", "events"): 8001,
        ("serve", "points"): 8002,
        ("serve", "redemption"): 8003,
        ("serve", "pages"): 8004,
        ("serve", "notifications"): 8005,
        ("worker", "notifications"): 8015,
        ("worker", "notifications-sender"): 8025,
    }
    scraped = set()
    for job in config["scrape_configs"]:
        if not job["job_name"].startswith("warmbee"):
            continue
        addresses = [t for s in job.get("static_configs", []) for t in s["targets"]]
        addresses += [f"{n}:{d['port']}" for d in job.get("dns_sd_configs", []) for n in d["names"]]
        for address in addresses:
            host, port = address.rsplit(":", 1)
            host = host.removeprefix("tasks.")
            assert host in services, f"{job['job_name']}: {host} is not a compose service"
            expected = ports.get(tuple(services[host]["command"]), 8012)
            assert int(port) == expected, f"{job['job_name']}: {address}, the service listens on {expected}"
            scraped.add(host)
    assert scraped == {
        "events",
        "points",
        "redemption",
        "points-worker",
        "pages",
        "notifications",
        "notifications-worker",
        "notifications-sender",
    }


def test_no_variable_is_left_without_a_default_or_a_message():
    text = COMPOSE.read_text()
    for variable in re.findall(r"(?<!\$)\$\{([^}]+)\}", text):
        assert ":-" in variable or ":?" in variable, variable


def _resolved(value: str) -> str:
    """A compose value with each ${NAME:-default} replaced by its default, as compose does when unset."""
    return re.sub(r"\$\{[^}:]+:-([^}]*)\}", r"\1", value)


def test_the_migration_runs_as_the_owner_and_the_services_as_the_application_role():
    """Two credentials: `migrate` has only the owner's (it alters tables), the services only the application
    role's (read and append the ledger, migrations/0009.privileges.sql); the roles are those the postgres
    init script creates, and the settings accept them in production."""
    services = load()["services"]
    postgres = services["postgres"]["environment"]
    migrate = services["migrate"]["environment"]
    assert "WARMBEE_PG_SERVER" not in migrate
    assert "WARMBEE_PG_ADMIN_SERVER" not in migrate
    owner = urlsplit(_resolved(migrate["WARMBEE_PG_OWNER_SERVER"]))
    assert owner.username == postgres["OWNER_ROLE"]
    assert owner.password == _resolved(postgres["OWNER_PASSWORD"])
    for name in ("events", "points", "points-worker", "redemption"):
        env = services[name]["environment"]
        assert "WARMBEE_PG_OWNER_SERVER" not in env, name
        assert "WARMBEE_PG_ADMIN_SERVER" not in env, name
        app = urlsplit(_resolved(env["WARMBEE_PG_SERVER"]))
        assert app.username == postgres["APP_ROLE"], name
        assert app.password == _resolved(postgres["APP_PASSWORD"]), name
        settings = Settings(
            env="production",
            auth_issuer="https://id.example",
            auth_audience="https://api.example",
            pg_server=_resolved(env["WARMBEE_PG_SERVER"]),
            pg_owner_server=_resolved(migrate["WARMBEE_PG_OWNER_SERVER"]),
        )
        assert settings.app_role != settings.owner_role
        assert settings.pg_admin_server is None
    # The pages service has no database: it gets no database credential at all.
    assert not {k for k in services["pages"]["environment"] if k.startswith("WARMBEE_PG_") and k.endswith("_SERVER")}
    assert postgres["POSTGRES_USER"] not in (postgres["APP_ROLE"], postgres["OWNER_ROLE"])


def test_postgres_creates_the_roles_on_first_start_with_the_script_the_database_administrator_runs():
    postgres = load()["services"]["postgres"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in postgres["volumes"] if v.startswith("./"))
    assert mounts["./postgres/init-warmbee.sh"].startswith("/docker-entrypoint-initdb.d/")
    script = (DEPLOY / "postgres" / "init-warmbee.sh").read_text()
    assert f"-f {mounts['./postgres/roles.sql']}" in script
    roles = (DEPLOY / "postgres" / "roles.sql").read_text()
    assert "CREATE ROLE warmbee_service NOLOGIN" in roles  # the group migrations/0009 grants to
    assert 'GRANT warmbee_service TO :"app"' in roles
    assert "OWNER %I', :'database', :'owner'" in roles
