"""The notifications service's Prometheus metrics. Names and labels are read by the alerts and dashboards.

The sender records every attempt it makes (``record_attempt``), delivered or not, refusals included."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.notifications.domain.deliveries import Outcome

WEBHOOK_ATTEMPTS = Counter(
    "warmbee_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered (a 2xx within the timeout) or failed (anything else)",
    ["outcome"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "warmbee_webhook_attempt_duration_seconds",
    "How long one webhook delivery attempt took, from the address check to the receiver's answer or the timeout",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
for _outcome in ("delivered", "failed"):  # every series from the start, so rates and alerts see 0 rather than nothing
    WEBHOOK_ATTEMPTS.labels(_outcome)


def record_attempt(outcome: Outcome) -> None:
    """Count one attempt and observe how long it took."""
    WEBHOOK_ATTEMPTS.labels("delivered" if outcome.delivered else "failed").inc()
    WEBHOOK_ATTEMPT_DURATION.observe(outcome.seconds)
