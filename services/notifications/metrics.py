"""The notifications service's Prometheus metrics. Names and labels are read by the alerts and dashboards.

The sender records every attempt it makes (``record_attempt``), delivered or not, refusals included."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.notifications.domain.deliveries import Outcome
from services.notifications.domain.kinds import KINDS
from services.notifications.domain.notices import NOTICE_KINDS

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


DELIVERIES_RECORDED = Counter(
    "warmbee_webhook_deliveries_recorded_total",
    "Deliveries recorded from points-ledger events (one per subscription and event), before the acknowledgement",
)
DELIVERIES = Counter(
    "warmbee_webhook_deliveries_total",
    "Deliveries settled, by kind and outcome: delivered, or failed after retrying for the whole retry period",
    ["kind", "outcome"],
)
OLDEST_PENDING = Gauge(
    "warmbee_webhook_oldest_pending_age_seconds",
    "Age of the oldest delivery not yet delivered nor failed (0 when none waits)",
)
FAILING_SUBSCRIPTIONS = Gauge(
    "warmbee_webhook_failing_subscriptions",
    "Live subscriptions whose receiver's last answer was a failure (a delivery pending after an attempt)",
)
EVENT_TO_DELIVERY = Histogram(
    "warmbee_webhook_event_to_delivery_seconds",
    "From a delivery's recording (its event read from points-ledger) to its delivery, retries included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0),
)
for _kind in KINDS:
    for _end in ("delivered", "failed"):
        DELIVERIES.labels(_kind, _end)

RIDER_NOTICES_MADE = Counter(
    "warmbee_rider_notices_made_total",
    "Rider notices made: awards summed over the window, redemptions confirmed or expired, codes about to expire,"
    " disputes resolved, points about to lapse",
)
RIDER_NOTICES = Counter(
    "warmbee_rider_notices_total",
    "Rider notices settled at the gateway, by kind and outcome: delivered, or failed after the whole retry period",
    ["kind", "outcome"],
)
NOTICE_OLDEST_PENDING = Gauge(
    "warmbee_rider_notice_oldest_pending_age_seconds",
    "Age of the oldest rider notice the gateway has not yet taken (0 when none waits)",
)
for _kind in NOTICE_KINDS:
    for _end in ("delivered", "failed"):
        RIDER_NOTICES.labels(_kind, _end)

PRUNED = Counter(
    "warmbee_notifications_pruned_rows_total",
    "Rows of the notifications' tables removed by retention (done and older than the retention), by table",
    ["table"],
)
