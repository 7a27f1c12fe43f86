"""Publishing over Kafka: the event as JSON to ``activity-events``, keyed by the rider (``subject``) so
one rider's events stay in order on one partition. The broker's acknowledgement is all a producer learns:
the points worker validates each event afterwards, and one that fails becomes a dead letter.

Security comes from the same ``WARMBEE_KAFKA_*`` variables the services read (``libs/platform/settings.py``),
so a source system configured like a service connects like one: SASL/SCRAM over TLS in production."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from warmbee_client.outcomes import BatchResult, EventResult, Outcome

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    topic: str = "activity-events"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None  # SCRAM-SHA-512 in production (deploy/kafka/)
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    enable_idempotence: bool = False  # true on Apache Kafka; the local broker lacks InitProducerId

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(PROTOCOLS)}, not {self.security_protocol!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaConfig:
        """The services' own variables: WARMBEE_KAFKA_BOOTSTRAP, _SECURITY_PROTOCOL, _SASL_MECHANISM,
        _SASL_USERNAME, _SASL_PASSWORD, _ENABLE_IDEMPOTENCE and WARMBEE_TOPIC_ACTIVITY_EVENTS."""
        env = os.environ if environ is None else environ
        # pydantic-settings reads names case-insensitively; so does this.
        upper = {k.upper(): v for k, v in env.items()}
        defaults = cls()
        return cls(
            bootstrap=upper.get("WARMBEE_KAFKA_BOOTSTRAP", defaults.bootstrap),
            topic=upper.get("WARMBEE_TOPIC_ACTIVITY_EVENTS", defaults.topic),
            security_protocol=upper.get("WARMBEE_KAFKA_SECURITY_PROTOCOL", defaults.security_protocol),
            sasl_mechanism=upper.get("WARMBEE_KAFKA_SASL_MECHANISM") or None,
            sasl_username=upper.get("WARMBEE_KAFKA_SASL_USERNAME") or None,
            sasl_password=upper.get("WARMBEE_KAFKA_SASL_PASSWORD") or None,
            enable_idempotence=upper.get("WARMBEE_KAFKA_ENABLE_IDEMPOTENCE", "false").lower() in ("1", "true", "yes"),
        )

    def connection_options(self) -> dict[str, Any]:
        """aiokafka's connection keywords, as ``libs/platform/kafka.py`` builds them for the services."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context()  # the system's trusted CAs
        if self.sasl_mechanism:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,  # aiokafka's names, for SCRAM too
                "sasl_plain_password": self.sasl_password,
            }
        return options

    def producer_options(self) -> dict[str, Any]:
        return {**self.connection_options(), "acks": "all", "enable_idempotence": self.enable_idempotence}


def rider_key(event: Mapping[str, Any]) -> bytes | None:
    subject = event.get("subject")
    return subject.encode() if isinstance(subject, str) else None


class KafkaPublisher:
    """``async with KafkaPublisher(KafkaConfig.from_env()) as p: await p.publish_batch(events)``."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer = AIOKafkaProducer(**config.producer_options(), linger_ms=5)

    async def __aenter__(self) -> KafkaPublisher:
        await self._producer.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def publish(self, event: Mapping[str, Any]) -> BatchResult:
        return await self.publish_batch([event])

    async def publish_batch(self, events: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Queue every event, then wait for the broker's acknowledgements (acks=all): one round trip per
        producer batch, not per event."""
        futures = [
            await self._producer.send(
                self.config.topic,
                json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode(),
                key=rider_key(e),
            )
            for e in events
        ]
        acks = await asyncio.gather(*futures, return_exceptions=True)
        results = tuple(
            EventResult(i, _event_id(e), Outcome.FAILED, f"{type(a).__name__}: {a}")
            if isinstance(a, BaseException)
            else EventResult(i, _event_id(e), Outcome.DELIVERED)
            for i, (e, a) in enumerate(zip(events, acks, strict=True))
        )
        return BatchResult(results, 0, 0)


def _event_id(event: Mapping[str, Any]) -> str | None:
    value = event.get("id")
    return value if isinstance(value, str) else None
