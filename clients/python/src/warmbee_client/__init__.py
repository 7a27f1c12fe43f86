"""warmbee's publishing client for source systems: HTTP (``HttpPublisher``) or Kafka (``KafkaPublisher``)."""

from warmbee_client.http import HttpPublisher
from warmbee_client.kafka import KafkaConfig, KafkaPublisher
from warmbee_client.outcomes import BatchResult, EventResult, Outcome
from warmbee_client.retry import RetryBudget, RetryPolicy, parse_retry_after

__all__ = [
    "BatchResult",
    "EventResult",
    "HttpPublisher",
    "KafkaConfig",
    "KafkaPublisher",
    "Outcome",
    "RetryBudget",
    "RetryPolicy",
    "parse_retry_after",
]
