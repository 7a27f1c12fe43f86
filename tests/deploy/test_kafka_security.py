"""Kafka in production, offline: SASL/SCRAM over TLS from the WARMBEE_KAFKA_* settings reaches every
producer and consumer the services build, the notifications worker's faust credentials and the
publishing client (clients/python) alike; deploy/kafka/acls.sh lets a source write activity-events only."""

from __future__ import annotations

import os
import shlex
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from libs.platform.kafka import client_options, make_producer
from libs.platform.settings import Settings
from services.notifications.entrypoints.consumer import _credentials
from services.publishing import kafka_config
from warmbee_client import KafkaConfig

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_KAFKA = {
    "WARMBEE_KAFKA_BOOTSTRAP": "kafka-0.kafka.example.internal:9093",
    "WARMBEE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "WARMBEE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "WARMBEE_KAFKA_SASL_USERNAME": "source-volunteer-platform",
    "WARMBEE_KAFKA_SASL_PASSWORD": "s3cret-from-a-secret",
    "WARMBEE_KAFKA_ENABLE_IDEMPOTENCE": "true",
}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def comparable(options: dict[str, Any]) -> dict[str, Any]:
    """Options with the TLS context replaced by what matters of it (two contexts are never equal)."""
    context = options.get("ssl_context")
    if isinstance(context, ssl.SSLContext):
        return {**options, "ssl_context": (context.verify_mode, context.check_hostname)}
    return options


def test_sasl_scram_over_tls_reaches_the_services_connection_options(monkeypatch) -> None:
    options = client_options(settings_from(PRODUCTION_KAFKA, monkeypatch))
    assert comparable(options) == {
        "bootstrap_servers": "kafka-0.kafka.example.internal:9093",
        "security_protocol": "SASL_SSL",
        "ssl_context": (ssl.CERT_REQUIRED, True),  # the broker's certificate and host name are checked
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "source-volunteer-platform",
        "sasl_plain_password": "s3cret-from-a-secret",
    }


async def test_the_services_producer_is_built_with_them(monkeypatch) -> None:
    producer = make_producer(settings_from(PRODUCTION_KAFKA, monkeypatch))  # built, never started
    client = producer.client
    assert (client._security_protocol, client._sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (client._sasl_plain_username, client._sasl_plain_password) == (
        "source-volunteer-platform",
        "s3cret-from-a-secret",
    )
    assert isinstance(client._ssl_context, ssl.SSLContext)
    assert client._ssl_context.verify_mode is ssl.CERT_REQUIRED


def test_the_notifications_worker_logs_in_the_same_way(monkeypatch) -> None:
    credentials: Any = _credentials(settings_from(PRODUCTION_KAFKA, monkeypatch))
    assert (credentials.mechanism.value, credentials.username, credentials.password) == (
        "SCRAM-SHA-512",
        "source-volunteer-platform",
        "s3cret-from-a-secret",
    )
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    "env",
    [
        PRODUCTION_KAFKA,
        {"WARMBEE_KAFKA_BOOTSTRAP": "broker:9093", "WARMBEE_KAFKA_SECURITY_PROTOCOL": "SSL"},
        {"WARMBEE_KAFKA_BOOTSTRAP": "127.0.0.1:9092"},
    ],
    ids=["sasl-scram-tls", "tls", "plaintext"],
)
def test_the_client_honours_the_same_settings_as_the_services(monkeypatch, env) -> None:
    settings = settings_from(env, monkeypatch)
    from_env = KafkaConfig.from_env({**os.environ, **env})
    assert comparable(from_env.connection_options()) == comparable(client_options(settings))
    assert from_env == kafka_config(settings)  # `warmbee publish --over kafka` builds the same
    assert from_env.producer_options()["acks"] == "all"
    assert from_env.producer_options()["enable_idempotence"] is settings.kafka_enable_idempotence


def test_the_clients_settings_never_show_the_password() -> None:
    config = KafkaConfig.from_env(PRODUCTION_KAFKA)
    assert config.sasl_password == "s3cret-from-a-secret"
    assert "s3cret" not in repr(config)


def test_the_client_refuses_an_unknown_security_protocol() -> None:
    with pytest.raises(ValueError, match="SASL_SSL"):
        KafkaConfig.from_env({"WARMBEE_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"})


def acls(*sources: str) -> list[tuple[str, str, str, str]]:
    """What deploy/kafka/acls.sh grants, from the commands it prints with KAFKA_ACLS=echo."""
    printed = subprocess.run(
        ["sh", str(ROOT / "deploy/kafka/acls.sh"), *sources],
        env={"PATH": os.environ["PATH"], "KAFKA_ACLS": "echo"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    grants = []
    for line in printed.splitlines():
        words = shlex.split(line)
        assert words[words.index("--resource-pattern-type") + 1] == "literal"  # never a prefix or wildcard
        principal = words[words.index("--allow-principal") + 1]
        operation = words[words.index("--operation") + 1]
        kind = next(w for w in words if w in ("--topic", "--group", "--cluster", "--transactional-id"))
        grants.append((principal, operation, kind.removeprefix("--"), words[words.index(kind) + 1]))
    return grants


def test_a_source_may_only_write_activity_events() -> None:
    granted = acls("volunteer-platform", "grid-office")
    for source in ("User:source-volunteer-platform", "User:source-grid-office"):
        assert [g[1:] for g in granted if g[0] == source] == [("Write", "topic", "activity-events")]


def test_the_services_have_what_their_clients_do_and_no_more() -> None:
    granted = set(acls())
    assert granted == {
        ("User:warmbee-events", "Write", "topic", "activity-events"),
        ("User:warmbee-points", "Read", "topic", "activity-events"),
        ("User:warmbee-points", "Read", "group", "warmbee-points"),
        ("User:warmbee-points", "Write", "topic", "activity-events-dlq"),
        ("User:warmbee-points", "Write", "topic", "points-ledger"),
        ("User:warmbee-redemption", "Write", "topic", "points-ledger"),
        ("User:warmbee-notifications", "Read", "topic", "points-ledger"),
        ("User:warmbee-notifications", "Read", "group", "warmbee-notifications"),
    }
    defaults = Settings()
    assert {g[3] for g in granted if g[2] == "topic"} == {
        defaults.topic_activity_events,
        defaults.topic_activity_events_dlq,
        defaults.topic_points_ledger,
    }
    assert {g[3] for g in granted if g[2] == "group"} == {
        defaults.points_consumer_group,
        defaults.notifications_consumer_group,
    }


def test_the_broker_denies_what_no_acl_allows() -> None:
    properties = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/kafka/server-security.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["listeners"].startswith("SASL_SSL://")
    assert properties["ssl.endpoint.identification.algorithm"] == "https"
