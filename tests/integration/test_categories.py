"""All 8 categories on real PostgreSQL: hazard de-duplication across riders and workers, limits,
rules published for the future, replay and what-if in a scratch schema."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.points.domain.rules import Rules
from services.points.handlers import BatchOutcome, RulesCache, RulesRefused, Scorer, publish_rules
from services.points.replay import replay, what_if
from services.points.rules_files import DEFAULT_RULES_FILE
from tests.integration.factories import SCHEMAS, KafkaRecord, record

DEGREE_M = 111_320.0


@pytest.fixture
def scorer(settings: Settings) -> Scorer:
    return Scorer(settings, SCHEMAS, RulesCache())


def hazard(rider: str, lat: float, lon: float, reported_at: str, severity: str = "medium") -> dict[str, Any]:
    report = f"r-{uuid.uuid4().hex[:8]}"
    return {
        "specversion": "1.0",
        "id": f"hz-{report}",
        "source": "grid-office",
        "type": "hazard.report.verified",
        "subject": rider,
        # verified a day after it was reported: a report's reported_at never lies after the event's time
        "time": (datetime.fromisoformat(reported_at) + timedelta(days=1)).isoformat(),
        "data": {"report_id": report, "severity": severity, "lat": lat, "lon": lon, "reported_at": reported_at},
    }


def event(rider: str, type_: str, data: dict[str, Any], time: str = "2024-05-01T09:00:00+08:00") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{uuid.uuid4().hex[:10]}",
        "source": "community-centre-r29",
        "type": type_,
        "subject": rider,
        "time": time,
        "data": data,
    }


def a_place() -> tuple[float, float]:
    """A spot of its own for each test, so reports of other tests are never 'the same hazard'."""
    n = uuid.uuid4().int
    return 30.0 + (n % 100_000) / 10_000, 104.0 + (n // 100_000 % 100_000) / 10_000


async def batch(db: Database, scorer: Scorer, *documents: dict[str, Any]) -> BatchOutcome:
    records: list[KafkaRecord] = [record(d, key=d["subject"]) for d in documents]
    return await db.run(lambda conn: scorer.score_batch(conn, records))


def points(outcome: BatchOutcome) -> list[int]:
    return [s.points for _, s in outcome.scored]


async def test_the_first_report_of_a_hazard_pays_in_full_and_a_later_one_within_50_m_and_24_h_pays_1(
    db: Database, scorer: Scorer
) -> None:
    lat, lon = a_place()
    first = hazard("rider-a", lat, lon, "2024-05-02T08:00:00+08:00")
    near = hazard("rider-b", lat + 40 / DEGREE_M, lon, "2024-05-02T20:00:00+08:00")  # 40 m, 12 h later
    far = hazard("rider-c", lat + 60 / DEGREE_M, lon, "2024-05-02T20:00:00+08:00")  # 60 m away: another hazard

    outcomes = [await batch(db, scorer, d) for d in (first, near, far)]

    assert [points(o) for o in outcomes] == [[15], [1], [15]]
    assert first["data"]["report_id"] in outcomes[1].scored[0][1].reason.render()


async def test_a_rejected_report_pays_0_and_does_not_make_a_later_report_a_duplicate(
    db: Database, scorer: Scorer
) -> None:
    lat, lon = a_place()
    rejected = hazard("rider-a", lat, lon, "2024-05-02T08:00:00+08:00", severity="rejected")
    later = hazard("rider-b", lat, lon, "2024-05-02T09:00:00+08:00", severity="high")

    assert points(await batch(db, scorer, rejected)) == [0]
    assert points(await batch(db, scorer, later)) == [30]


async def test_two_reports_of_one_hazard_in_one_batch_pay_the_first_in_full(db: Database, scorer: Scorer) -> None:
    lat, lon = a_place()
    first = hazard("rider-a", lat, lon, "2024-05-02T08:00:00+08:00", severity="low")
    second = hazard("rider-b", lat, lon + 10 / DEGREE_M, "2024-05-02T08:05:00+08:00", severity="high")

    assert points(await batch(db, scorer, first, second)) == [5, 1]


async def test_two_workers_scoring_the_same_hazard_at_the_same_moment_pay_exactly_one_in_full(
    db: Database, settings: Settings
) -> None:
    for _ in range(5):
        lat, lon = a_place()
        reports = [hazard(f"rider-{i}", lat, lon + i / DEGREE_M, "2024-05-02T08:00:00+08:00") for i in range(4)]
        workers = [Scorer(settings, SCHEMAS, RulesCache()) for _ in reports]

        outcomes = await asyncio.gather(*(batch(db, w, r) for w, r in zip(workers, reports, strict=True)))

        assert sorted(p for o in outcomes for p in points(o)) == [1, 1, 1, 15]


async def test_the_fourth_activity_of_an_iso_week_earns_nothing(db: Database, scorer: Scorer) -> None:
    rider = f"rider-{uuid.uuid4().hex[:8]}"
    week = [
        event(rider, "activity.attended", {"activity_id": f"act-{i}"}, f"2024-05-0{i + 6}T10:00:00+08:00")
        for i in range(4)
    ]  # Monday 6 May to Thursday 9 May 2024
    next_monday = event(rider, "activity.attended", {"activity_id": "act-9"}, "2024-05-13T10:00:00+08:00")

    outcome = await batch(db, scorer, *week, next_monday)

    assert points(outcome) == [8, 8, 8, 0, 8]
    assert "weekly limit of 3 activities reached in 2024-W19" in outcome.scored[3][1].reason.render()


async def test_every_category_scores_its_default_rule(db: Database, scorer: Scorer) -> None:
    rider = f"rider-{uuid.uuid4().hex[:8]}"
    lat, lon = a_place()
    documents = [
        event(rider, "civic.action.verified", {"action": "bike_tidy"}),
        event(rider, "activity.attended", {"activity_id": "a1"}),
        hazard(rider, lat, lon, "2024-05-02T08:00:00+08:00", severity="high"),
        event(rider, "safety.training.completed", {"training_id": "t1"}),
        event(rider, "safety.quiz.passed", {"quiz_id": "q1"}),
        event(rider, "safety.quiz.passed", {"quiz_id": "q1"}),
        event(rider, "safety.month.clean", {"month": "2024-04"}),
        event(rider, "skill.course.completed", {"course_id": "c1"}),
        event(rider, "skill.certificate.obtained", {"certificate_id": "cert1"}),
        event(rider, "outreach.session.completed", {"session_id": "s1", "topic": "anti_fraud"}),
        event(rider, "honor.awarded", {"honor_id": "h1", "level": "street"}),
        event(rider, "honor.awarded", {"honor_id": "h1", "level": "street"}, "2024-11-01T10:00:00+08:00"),
        event(rider, "honor.awarded", {"honor_id": "h1", "level": "street"}, "2025-02-01T10:00:00+08:00"),
    ]

    outcome = await batch(db, scorer, *documents)

    assert points(outcome) == [5, 8, 30, 10, 5, 0, 20, 20, 50, 5, 200, 0, 200]


def _candidate(**changes: Any) -> Rules:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document.update(changes)
    return Rules.model_validate(document)


async def test_a_version_that_would_rescore_history_is_refused_with_every_reason(db: Database) -> None:
    past = _candidate(version=1, effective_from="2024-06-01T00:00:00+08:00")

    with pytest.raises(RulesRefused) as refused:
        await publish_rules(db, past, "test", timedelta(seconds=0))

    problems = " | ".join(refused.value.problems)
    assert "version: 1 is not after the stored version 1" in problems
    assert "effective_from" in problems
    assert "not in the future" in problems


async def test_replay_rebuilds_the_live_ledger_exactly(db: Database, settings: Settings, scorer: Scorer) -> None:
    rider = f"rider-{uuid.uuid4().hex[:8]}"
    lat, lon = a_place()
    await batch(
        db,
        scorer,
        event(rider, "civic.action.verified", {"action": "litter_pickup"}),
        hazard(rider, lat, lon, "2024-05-02T08:00:00+08:00"),
        hazard("rider-other", lat, lon, "2024-05-02T09:00:00+08:00"),
    )

    report = await replay(db, settings, SCHEMAS)

    assert report.compared > 0
    assert report.differences == []


async def test_what_if_shows_the_cost_of_a_candidate_and_writes_nothing(
    db: Database, settings: Settings, scorer: Scorer
) -> None:
    rider = f"rider-{uuid.uuid4().hex[:8]}"
    await batch(
        db,
        scorer,
        *[
            event(rider, "civic.action.verified", {"action": "litter_pickup"}, "2023-03-01T09:00:00+08:00")
            for _ in range(3)
        ],
    )
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document["version"] = 2
    document["effective_from"] = "2030-01-01T00:00:00+08:00"
    document["categories"]["civic_practice"]["points_per_action"] = 7
    candidate = Rules.model_validate(document)
    start = datetime(2023, 3, 1, tzinfo=UTC)

    async with db.read() as conn:
        entries_before = await conn.fetchval("SELECT count(*) FROM ledger_transaction")
    report = await what_if(db, settings, SCHEMAS, candidate, start, start + timedelta(days=1))
    async with db.read() as conn:
        entries_after = await conn.fetchval("SELECT count(*) FROM ledger_transaction")

    civic = report.categories["civic_practice"]
    assert (civic.events, civic.current, civic.candidate) == (3, 0, 20)  # no rules in 2023; candidate: cap 20
    assert report.riders[0][0] == rider
    assert entries_after == entries_before
