"""Metrics of the events service, recorded around its use cases (after commit, or on refusal) by the API."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import Counter

from libs.activity.model import EventSchemas
from libs.platform.errors import DomainError
from services.events.handlers import Accepted

# source: the token's sub (bounded by the tokens issued); type: a known type or "unknown".
EVENTS_RECEIVED = Counter(
    "warmbee_events_received_total",
    "Activity events received over HTTP, by outcome: accepted, duplicate, invalid (failed validation, "
    "another source's, or an id reused), refused (valid, but in a request refused for another event)",
    ["source", "type", "outcome"],
)


def count_accepted(source: str, result: Accepted) -> None:
    _count(source, ((e.type, "accepted") for e in result.new))
    _count(source, ((e.type, "duplicate") for e in result.duplicate))


def count_refused(source: str, documents: Sequence[object], problem: DomainError, schemas: EventSchemas) -> None:
    """Each event of a refused request: ``invalid`` if the problem names it, else ``refused``."""
    faulty = {e.get("index") for e in problem.extra.get("errors", []) if isinstance(e, dict)}
    _count(
        source,
        ((_type_of(d, schemas), "invalid" if i in faulty else "refused") for i, d in enumerate(documents)),
    )


def _count(source: str, outcomes: Iterable[tuple[str, str]]) -> None:
    for (event_type, outcome), n in Tally(outcomes).items():
        EVENTS_RECEIVED.labels(source, event_type, outcome).inc(n)


def _type_of(document: object, schemas: EventSchemas) -> str:
    """The event's type as a label value: one of the known types, or "unknown" (label values stay bounded)."""
    value = document.get("type") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value in schemas.by_type else "unknown"
