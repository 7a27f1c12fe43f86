"""Use cases of the points service. ``score_batch`` is the worker's unit of work: the events,
their ledger entries, counters, dead letters and outbox rows of one Kafka batch commit together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson

from libs.activity.binary import kept_payload, record_document, validate_record
from libs.activity.model import (
    FUTURE_SLACK,
    RECEIVED_VIA_HEADER,
    ActivityEvent,
    EventSchemas,
    Invalid,
    decode_message,
    event_identity,
    printable,
    validate_event,
)
from libs.activity.store import ActivityStore, DeadLetterInput
from libs.i18n.reasons import Reason
from libs.ledger.feed import entries_reference
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, PROGRAMME_ISSUED, adjustment_key, award_key, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from libs.ledger.store import Entry, IdempotencyConflict, InsufficientBalance, LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.errors import DomainError
from libs.platform.kafka import Message
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from libs.platform.settings import Settings
from services.points.domain.hazards import PaidReports, hazard_cells
from services.points.domain.reconcile import Check, Report
from services.points.domain.rules import NoRulesInForce, RuleBook, Rules, publication_problems
from services.points.domain.scoring import Score, Tally, award_lot, plan
from services.points.queries import ReconcileStore
from services.points.store import PointsStore, PublishedRules

DLQ_VALUE_MAX = 512 * 1024


@dataclass(slots=True)
class BatchOutcome:
    scored: list[tuple[ActivityEvent, Score]] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: list[DeadLetterInput] = field(default_factory=list)


class RulesCache:
    """The rule book, reloaded from the database at most every ``ttl_s`` (``rules_reload_s``) so a
    published version takes effect without a restart. A version is published at least
    ``rules_min_lead_s`` ahead, more than ``ttl_s`` plus the future slack (Settings refuses less), so
    every worker has it before an event it applies to can be scored."""

    def __init__(self, ttl_s: float = 5.0, fixed: RuleBook | None = None) -> None:
        self._ttl_s = ttl_s
        self._book = fixed or RuleBook([])
        self._loaded_at = float("inf") if fixed else float("-inf")  # a fixed book is never reloaded

    async def book(self, conn: Connection) -> RuleBook:
        asked_at = time.monotonic()
        if asked_at - self._loaded_at > self._ttl_s:
            self._book = RuleBook(await PointsStore(conn).rules_versions())
            # The book's age runs from before the query: a version committed while the query ran may be
            # missing from it, and must be picked up one interval after that, not after the query returned.
            self._loaded_at = asked_at
        return self._book


def parse_messages(
    messages: Sequence[Message], schemas: EventSchemas, now: datetime, future_slack: timedelta = FUTURE_SLACK
) -> tuple[list[tuple[ActivityEvent, Message]], list[DeadLetterInput]]:
    """Valid events with the message each came in, and dead letters for the rest."""
    events: list[tuple[ActivityEvent, Message]] = []
    dead: list[DeadLetterInput] = []
    for m in messages:
        result = validate_record(m.value, m.headers, schemas, now, future_slack)
        if isinstance(result, Invalid):
            dead.append(_dead_letter(m, result.reason, result.source, result.event_id))
        else:
            events.append((result, m))
    return events, dead


def _dead_letter(m: Message, reason: str, source: str | None, event_id: str | None) -> DeadLetterInput:
    payload = kept_payload(m.value, m.headers)
    return DeadLetterInput(reason, m.topic, m.partition, m.offset, m.key, payload, source, event_id)


UNSCORABLE = "could not be scored"
# The headers of an activity-events-dlq message (schemas/asyncapi.yaml documents them; a test holds the two
# together).
DLQ_REASON_HEADER = "warmbee-dead-letter-reason"
DLQ_HEADERS = {
    "topic": "warmbee-original-topic",
    "partition": "warmbee-original-partition",
    "offset": "warmbee-original-offset",
    "truncated": "warmbee-truncated-from-bytes",
}


def unscorable(exc: Exception) -> str:
    """The reason kept with an event the scorer cannot score: what failed, in words an operator can pass
    on to whoever fixes it (bounded, and without control characters, which the value may have held)."""
    return printable(f"{UNSCORABLE}: {type(exc).__name__}: {exc}", 1000)


def stored_dead_letter(document: Mapping[str, Any], reason: str) -> DeadLetterInput:
    """A dead letter for an event accepted over HTTP: no Kafka position; the event as stored is its payload."""
    source, event_id = event_identity(document)
    rider = document.get("subject")
    key = rider.encode() if isinstance(rider, str) else None
    return DeadLetterInput(reason, None, None, None, key, orjson.dumps(document), source, event_id)


class Scorer:
    def __init__(self, settings: Settings, schemas: EventSchemas, rules: RulesCache) -> None:
        self._settings = settings
        self._schemas = schemas
        self._rules = rules
        self._future_slack = timedelta(seconds=settings.event_future_slack_s)

    async def score_batch(self, conn: Connection, messages: Sequence[Message]) -> BatchOutcome:
        """One Kafka batch: record its events, dead-letter the invalid, score what is not scored yet."""
        parsed, dead = parse_messages(messages, self._schemas, datetime.now(UTC), self._future_slack)
        events = [e for e, _ in parsed]
        message_of = {id(e): m for e, m in parsed}
        outcome = BatchOutcome(dead_letters=dead)
        activity = ActivityStore(conn)
        recorded = await activity.record(events, via="kafka")
        for event in recorded.conflicts:
            outcome.dead_letters.append(
                _dead_letter(
                    message_of[id(event)],
                    "id: already used by this source for a different event; give each event its own id",
                    event.source,
                    event.event_id,
                )
            )
        conflicting = {id(e) for e in recorded.conflicts}
        candidates = list({e.key: e for e in events if id(e) not in conflicting}.values())
        # An event first recorded by this transaction cannot have an award yet: only the others are looked up.
        await self.score_events(conn, candidates, outcome, unscored={e.key for e in recorded.new})
        outcome.duplicates = len(events) - len(outcome.scored) - len(recorded.conflicts)
        await self._keep_dead_letters(conn, outcome.dead_letters)
        return outcome

    async def score_stored(self, conn: Connection, documents: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Score stored events that have no award yet (accepted over HTTP; their Kafka copy is late or was
        lost). One that validation now refuses (accepted before a check was added) becomes a dead letter
        with the reason, instead of waiting forever."""
        now = datetime.now(UTC)
        events: list[ActivityEvent] = []
        refused: list[DeadLetterInput] = []
        for document in documents:
            result = validate_event(document, self._schemas, now, self._future_slack)
            if isinstance(result, Invalid):
                refused.append(stored_dead_letter(document, f"{UNSCORABLE}: {result.reason}"))
            else:
                events.append(result)
        outcome = BatchOutcome()
        await self.score_events(conn, events, outcome)
        outcome.dead_letters = await self._keep_dead_letters(conn, refused)
        return outcome

    async def quarantine(self, conn: Connection, message: Message, exc: Exception) -> list[DeadLetterInput]:
        """Dead-letter one Kafka message that cannot be scored for a reason that does not pass (a value
        the rules or the database cannot handle, a defect): alone, so its batch and partition go on."""
        binary = record_document(message.value, message.headers)
        decoded = decode_message(message.value) if binary is None else binary
        source, event_id = event_identity(decoded) if isinstance(decoded, dict) else (None, None)
        return await self._keep_dead_letters(conn, [_dead_letter(message, unscorable(exc), source, event_id)])

    async def quarantine_stored(
        self, conn: Connection, document: Mapping[str, Any], exc: Exception
    ) -> list[DeadLetterInput]:
        """``quarantine`` for an event accepted over HTTP (a dead letter without a Kafka position)."""
        return await self._keep_dead_letters(conn, [stored_dead_letter(document, unscorable(exc))])

    async def _keep_dead_letters(self, conn: Connection, letters: Sequence[DeadLetterInput]) -> list[DeadLetterInput]:
        stored = await ActivityStore(conn).add_dead_letters(letters)
        now = datetime.now(UTC)
        await OutboxStore(conn).add(
            [m for d in stored for m in (self._dlq_message(d), self._dead_lettered_message(d, now))]
        )
        return stored

    async def score_events(
        self,
        conn: Connection,
        candidates: Sequence[ActivityEvent],
        outcome: BatchOutcome,
        unscored: AbstractSet[tuple[str, str]] = frozenset(),
    ) -> None:
        """Score, in order, those of ``candidates`` that have no award entry yet (``unscored``: keys known
        to have none), under locks that make each rider's caps and each hazard's first report hold
        whatever runs at the same moment."""
        points, ledger = PointsStore(conn), LedgerStore(conn)
        book = await self._rules.book(conn)
        plans = {e.key: plan(e, book) for e in candidates}
        searches = {key: p.search for key, p in plans.items()}
        riders = sorted({f"rider:{e.rider_id}" for e in candidates})
        cells = sorted({cell for search in searches.values() if search for cell in hazard_cells(search)})
        await points.lock([*riders, *cells])
        done = await ledger.awarded([e.key for e in candidates if e.key not in unscored])
        to_score = [e for e in candidates if e.key not in done]
        paid = PaidReports(await points.hazard_reports_in([x for e in to_score if (x := searches[e.key]) is not None]))
        counters = await points.counters((e.rider_id, c) for e in to_score for c in plans[e.key].counters)
        tally = Tally(counters, paid)
        txs: list[LedgerTransaction] = []
        for event in to_score:
            result = tally.score(event, plans[event.key])
            txs.append(award_transaction(event, result, plans[event.key].rules))
            outcome.scored.append((event, result))
        appended = await ledger.append(txs)
        await points.add_to_counters(tally.increments)
        await points.add_hazard_reports([(e.source, e.event_id, report) for e, report in tally.paid_now])
        if appended.recorded:
            await OutboxStore(conn).add(
                [entries_reference(self._settings.topic_points_ledger, list(appended.recorded.values()))]
            )

    def _dead_lettered_message(self, d: DeadLetterInput, at: datetime) -> OutboxMessage:
        """What became of the event, on ``points-ledger`` for webhooks (``event.dead_lettered``): its source
        and id where they could be read, and why it was set aside; never the payload (the dead letter
        keeps it). The id is the dead letter's identity, so a redelivery, kept once, says it once."""
        position = "http" if d.topic is None else f"{d.topic}/{d.partition}/{d.offset}"
        identity = hashlib.sha256(f"{position}\0{d.source}\0{d.event_id}\0".encode() + (d.value or b"")).hexdigest()
        body = {
            "specversion": "1.0",
            "id": f"dead-letter-{identity[:32]}",
            "source": "warmbee/points",
            "type": "event.dead_lettered",
            "subject": d.event_id or "unknown",
            "time": at,
            "datacontenttype": "application/json",
            "data": {
                "source": d.source,
                "event_id": d.event_id,
                "reason": d.reason,
                "reason_code": "event.dead_lettered",
                "reason_params": {"error": d.reason},
                "received_via": "http" if d.topic is None else "kafka",
                "topic": d.topic,
                "partition": d.partition,
                "offset": d.offset,
            },
        }
        key = f"{d.source or ''}/{d.event_id or ''}".encode()
        return OutboxMessage(self._settings.topic_points_ledger, key, orjson.dumps(body))

    def _dlq_message(self, d: DeadLetterInput) -> OutboxMessage:
        value = d.value or b""
        headers = [(DLQ_REASON_HEADER, d.reason)]
        if d.topic is None:  # accepted over HTTP, found unscorable
            headers.append((RECEIVED_VIA_HEADER, "http"))
        else:
            headers += [
                (DLQ_HEADERS["topic"], d.topic),
                (DLQ_HEADERS["partition"], str(d.partition)),
                (DLQ_HEADERS["offset"], str(d.offset)),
            ]
        if len(value) > DLQ_VALUE_MAX:
            # A broker refuses messages over its size limit (1 MB by default): the topic gets the head of
            # the value, the dead_letter table keeps all of it.
            headers.append((DLQ_HEADERS["truncated"], str(len(value))))
            value = value[:DLQ_VALUE_MAX]
        return OutboxMessage(self._settings.topic_activity_events_dlq, d.key, value, tuple(headers))


async def score_kafka_batch(db: Database, scorer: Scorer, messages: Sequence[Message]) -> BatchOutcome:
    """Score one Kafka batch in one transaction, committed when this returns (then the offsets may be)."""
    return await db.run(lambda conn: scorer.score_batch(conn, messages))


async def set_aside_message(db: Database, scorer: Scorer, message: Message, exc: Exception) -> BatchOutcome:
    """Dead-letter one Kafka message that cannot be scored, alone, in its own transaction."""
    return BatchOutcome(dead_letters=await db.run(lambda conn: scorer.quarantine(conn, message, exc)))


async def score_waiting(db: Database, scorer: Scorer, documents: Sequence[Mapping[str, Any]]) -> BatchOutcome:
    """Score stored events that wait (accepted over HTTP, not brought by Kafka), in one transaction."""
    return await db.run(lambda conn: scorer.score_stored(conn, documents))


async def set_aside_stored(db: Database, scorer: Scorer, document: Mapping[str, Any], exc: Exception) -> BatchOutcome:
    """Dead-letter one stored event that cannot be scored, alone, in its own transaction."""
    return BatchOutcome(dead_letters=await db.run(lambda conn: scorer.quarantine_stored(conn, document, exc)))


def award_transaction(event: ActivityEvent, result: Score, rules: Rules | None = None) -> LedgerTransaction:
    """The award entry of a scored event; under a lapse policy its points are a lot whose last good day
    the version in force at the event's own time fixes (so a replay fixes the same day)."""
    lot = award_lot(rules, event, result.points)
    return LedgerTransaction(
        idempotency_key=award_key(*event.key),
        kind=EntryKind.AWARD,
        rider_id=event.rider_id,
        reason=result.reason,
        postings=transfer(PROGRAMME_ISSUED, rider_available(event.rider_id), result.points),
        category=result.category,
        source=event.source,
        event_id=event.event_id,
        rule_id=result.rule_id,
        rule_version=result.rule_version,
        occurred_at=event.time,
        lot=lot,
    )


async def with_lot(conn: Connection, tx: LedgerTransaction, at: datetime) -> LedgerTransaction:
    """A positive adjustment at ``at`` opens a lot on the terms of the rules version then in force."""
    if tx.available_delta <= 0:
        return tx
    rules = RuleBook(await PointsStore(conn).rules_versions()).in_force_at(at)
    terms = rules.lot_terms(at) if rules is not None else None
    return replace(tx, lot=terms) if terms is not None else tx


async def adjust(
    db: Database,
    settings: Settings,
    operator: str,
    idempotency_key: str,
    rider_id: str,
    amount: int,
    reason: str,
) -> Entry:
    """Post a manual adjustment; the same key with the same body returns the first entry."""
    source, destination = (PROGRAMME_ADJUSTMENTS, rider_available(rider_id))
    if amount < 0:
        source, destination = destination, source
    tx = LedgerTransaction(
        idempotency_key=adjustment_key(operator, idempotency_key),
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider_id,
        reason=Reason.of("adjustment", note=reason),
        postings=transfer(source, destination, abs(amount)),
        actor=operator,
    )

    async def work(conn: Connection) -> Entry:
        ledger = LedgerStore(conn)
        credit = await with_lot(conn, tx, datetime.now(UTC))
        try:
            appended = await ledger.append([credit])
        except InsufficientBalance as exc:
            raise InsufficientBalance(f"amount: {amount} is more than the rider's available balance") from exc
        except IdempotencyConflict as exc:
            raise IdempotencyConflict(
                exc.key, "Idempotency-Key: this key was used for a different adjustment; use a new key"
            ) from exc
        tx_id = {**appended.recorded, **appended.existing}[tx.idempotency_key]
        if tx.idempotency_key in appended.recorded:
            await OutboxStore(conn).add([entries_reference(settings.topic_points_ledger, [tx_id])])
        entry = await ledger.entry(tx_id)
        assert entry is not None
        return entry

    return await db.run(work)


class RulesRefused(DomainError):
    """A rules version that cannot be published: each problem says what to fix."""

    kind = "rules-refused"

    def __init__(self, problems: list[str]) -> None:
        errors = [_field_and_fix(p) for p in problems]  # as an invalid file's errors, for the console
        super().__init__("; ".join(problems), problems=problems, errors=errors)
        self.problems = problems


def _field_and_fix(problem: str) -> dict[str, str]:
    """``{"path", "message"}`` of a publication problem, which reads "field: what to fix"."""
    path, _, message = problem.partition(": ")
    return {"path": path, "message": message} if message else {"path": "", "message": problem}


class RulesVersionPublished(RulesRefused):
    """That rules id and version are stored already, with another document: versions are immutable."""

    kind = "rules-version-published"


async def rules_in_force(db: Database, now: datetime) -> Rules:
    """The rules version in force at ``now``; ``NoRulesInForce`` before the first takes effect."""
    async with db.read() as conn:
        book = RuleBook(await PointsStore(conn).rules_versions())
    rules = book.in_force_at(now)
    if rules is None:
        raise NoRulesInForce("no rules version is in force yet; publish one")
    return rules


async def published_rules(db: Database) -> list[PublishedRules]:
    """Every published version, by the time it takes effect."""
    async with db.read() as conn:
        return await PointsStore(conn).published_rules()


@dataclass(frozen=True, slots=True)
class Publication:
    version: PublishedRules
    created: bool  # False: the same document was published before (a retry), nothing changed


async def publish_rules(
    db: Database, rules: Rules, published_by: str | None, lead: timedelta, *, same_again_is_done: bool = False
) -> Publication:
    """Store a new rules version that takes effect at least ``lead`` from now (``rules_min_lead_s``:
    every worker's cached rules reload before then); it is picked up without a restart.
    ``same_again_is_done``: the very document stored already under its id and version is the stored
    version, not a refusal (an HTTP retry after a lost answer)."""

    async def work(conn: Connection) -> Publication:
        store = PointsStore(conn)
        await store.lock(["rules:publish"])
        stored = await store.rules_version(rules.rules_id, rules.version)
        if stored is not None and same_again_is_done and stored.rules == rules:
            return Publication(stored, created=False)
        problems = publication_problems(rules, await store.rules_versions(), datetime.now(UTC), lead)
        if stored is not None:
            raise RulesVersionPublished(problems)
        if problems:
            raise RulesRefused(problems)
        await store.publish_rules(rules, published_by)
        created = await store.rules_version(rules.rules_id, rules.version)
        assert created is not None
        return Publication(created, created=True)

    return await db.run(work)


async def seed_rules(db: Database, rules: Rules, published_by: str | None) -> bool:
    """Store the default rules when no version of them is stored (a new database); idempotent."""
    return await db.run(lambda conn: PointsStore(conn).publish_rules(rules, published_by))


RECONCILE_CONNECTIONS = 2  # the checks run on this many connections at once, PostgreSQL a core each


async def reconcile(
    db: Database, stuck_after_s: int, connections: int = RECONCILE_CONNECTIONS, since: datetime | None = None
) -> Report:
    """Run every reconciliation check in one read-only, repeatable-read snapshot of the database: the
    first connection's, exported to the others (``SET TRANSACTION SNAPSHOT``, as ``pg_dump -j`` does), so
    the checks run side by side and still see one moment, and a write between two of them cannot look
    like a mismatch. The report lists them in their fixed order. Given ``since``, the checks look at what
    changed since then (``ReconcileStore``), not the whole ledger."""
    checks: list[Callable[[ReconcileStore], Awaitable[Check]]] = [  # in the report's order
        ReconcileStore.balanced_transactions,
        ReconcileStore.projection_matches_postings,
        ReconcileStore.never_negative,
        ReconcileStore.awards_are_grounded,
        ReconcileStore.redemptions_match_entries,
        partial(ReconcileStore.accepted_events_settled, stuck_after_s=stuck_after_s),
        ReconcileStore.disputes_match_adjustments,
        ReconcileStore.lots_match_their_entries,
        ReconcileStore.lot_links_match_their_entries,
        ReconcileStore.lots_add_up_to_balances,
    ]
    # The longest first (over 200,000 events: the rider balances 0.4 s, the lots 0.5 s, a tenth of a
    # second to 0.3 s each of the rest), so that the others fill in beside them.
    waiting = sorted(range(len(checks)), key=lambda n: n not in (1, 9))
    done: dict[int, Check] = {}

    async def run_checks(store: ReconcileStore) -> None:
        while waiting:
            n = waiting.pop(0)
            done[n] = await checks[n](store)

    async with db.read() as lead, lead.transaction(isolation="repeatable_read", readonly=True):
        snapshot, as_of = await ReconcileStore(lead).export_snapshot()
        async with contextlib.AsyncExitStack() as others, asyncio.TaskGroup() as group:
            for _ in range(connections - 1):
                conn = await others.enter_async_context(db.read())
                await others.enter_async_context(conn.transaction())
                await ReconcileStore(conn).adopt_snapshot(snapshot)
                group.create_task(run_checks(ReconcileStore(conn, since)))
            await run_checks(ReconcileStore(lead, since))
    return Report([done[n] for n in range(len(checks))], as_of, since)
