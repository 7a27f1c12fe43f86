"""Factories shared by the rules tests: activity events and the default rules file as a document."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from libs.activity.model import ActivityEvent
from services.points.domain.hazards import EarlierReport, HazardSearch
from services.points.domain.rules import RuleBook, Rules
from services.points.domain.scoring import Score, plan, score_planned

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "warmbee-default.v1.yaml"

SOURCE_OF_TYPE = {
    "volunteer.shift.completed": "volunteer-platform",
    "civic.action.verified": "grid-office",
    "activity.attended": "community-centre-r29",
    "hazard.report.verified": "grid-office",
    "safety.training.completed": "training-school",
    "safety.quiz.passed": "training-school",
    "safety.month.clean": "traffic-police",
    "skill.course.completed": "training-school",
    "skill.certificate.obtained": "training-school",
    "outreach.session.completed": "community-centre-r29",
    "honor.awarded": "honours-office",
}

_ids = itertools.count(1)
_DEFAULT_DOCUMENT: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


def event(
    type: str,  # the CloudEvents attribute
    data: dict[str, Any],
    time: str = "2024-05-01T09:00:00+08:00",
    rider: str = "rider-1",
    id: str | None = None,  # the CloudEvents attribute
) -> ActivityEvent:
    """One activity event as validation would produce it."""
    source = SOURCE_OF_TYPE[type]
    event_id = id or f"evt-{next(_ids)}"
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type,
        "subject": rider,
        "time": time,
        "data": data,
    }
    return ActivityEvent(
        source=source,
        event_id=event_id,
        type=type,
        rider_id=rider,
        time=datetime.fromisoformat(time.upper()),
        data=data,
        document=document,
    )


def default_document() -> dict[str, Any]:
    """The default rules file as a fresh dict, safe to change."""
    return copy.deepcopy(_DEFAULT_DOCUMENT)


def default_rules() -> Rules:
    return Rules.model_validate(default_document())


DEFAULT_BOOK = RuleBook([default_rules()])


# The rules tests ask one event at a time what the worker asks of a batch: through the same live
# functions (plan, then score_planned), without the batch around them.
def score(e: ActivityEvent, counters: Mapping[str, int], book: RuleBook, earlier: EarlierReport | None = None) -> Score:
    """What the event earns, as the worker scores it: its plan, then ``score_planned``."""
    return score_planned(e, plan(e, book), counters, earlier)


def counters_needed(e: ActivityEvent, book: RuleBook) -> list[str]:
    """The counter keys scoring the event reads (its plan's)."""
    return plan(e, book).counters


def hazard_search(e: ActivityEvent, book: RuleBook) -> HazardSearch | None:
    """Where the worker looks for an earlier report of the same hazard (its plan's search)."""
    return plan(e, book).search
