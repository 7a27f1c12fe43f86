"""The read side of the points service: what became of an event, what waits to be scored, and the
reconciliation checks (each returns how much it examined and what does not add up)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import asyncpg

from libs.i18n.reasons import Reason, recorded
from services.points.domain.disputes import SOURCE as DISPUTES_SOURCE
from services.points.domain.reconcile import Check, redemption_problems

RIDER_ACCOUNT = r"^rider:(.*):(available|held)$"


@dataclass(frozen=True, slots=True)
class EventStatus:
    status: Literal["pending", "scored", "dead_lettered"]
    category: str | None
    points: int | None
    reason: Reason
    rule_id: str | None
    rule_version: int | None
    rider_id: str | None


@dataclass(frozen=True, slots=True)
class AwardRow:
    rider_id: str
    category: str | None
    points: int
    reason: Reason  # compared by its code and values, as recorded
    rule_id: str | None
    rule_version: int | None
    lapses_on: date | None = None  # the award's lot's last good day (none: its points never lapse)


@dataclass(frozen=True, slots=True)
class LiveAward:
    key: tuple[str, str]  # the event: (source, event_id)
    event: dict[str, Any] | None  # the stored event it was made of
    award: AwardRow


class ReplayQueries:
    """What replay and what-if read, inside the caller's snapshot transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def awards_in_order(self, page: int) -> AsyncIterator[list[LiveAward]]:
        """Every live award entry with the event it was made of (None: the event is not stored), in the
        order first scored (the entry's ``tx_id``), ``page`` at a time, from one cursor (the caller's
        transaction holds it open). Planned for all its rows, not the first few: a hash join, not an
        index lookup per award."""
        await self._conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor = await self._conn.cursor(
            "SELECT t.source, t.event_id, a.event, t.rider_id, t.category, t.available_delta, t.reason_code,"
            " t.reason_params, CASE WHEN t.reason_code IS NULL THEN t.reason END AS reason, t.rule_id,"
            " t.rule_version, l.lapses_on"
            " FROM ledger_transaction t"
            " LEFT JOIN activity_event a ON a.source = t.source AND a.event_id = t.event_id"
            " LEFT JOIN ledger_lot l ON l.lot_id = t.tx_id"
            " WHERE t.kind = 'award' ORDER BY t.tx_id"
        )
        while rows := await cursor.fetch(page):
            yield [
                LiveAward(
                    (r["source"], r["event_id"]),
                    r["event"],
                    AwardRow(
                        r["rider_id"],
                        r["category"],
                        r["available_delta"],
                        recorded(r["reason_code"], r["reason_params"], r["reason"] or "", "award"),
                        r["rule_id"],
                        r["rule_version"],
                        r["lapses_on"],
                    ),
                )
                for r in rows
            ]

    async def events_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Live events that happened in [start, end): scored ones in the order first scored, then the rest."""
        rows = await self._conn.fetch(
            "SELECT a.event FROM activity_event a"
            " LEFT JOIN ledger_transaction t"
            "   ON t.kind = 'award' AND t.source = a.source AND t.event_id = a.event_id"
            " WHERE a.occurred_at >= $1 AND a.occurred_at < $2"
            " ORDER BY t.tx_id NULLS LAST, a.received_at",
            start,
            end,
        )
        return [r["event"] for r in rows]


PENDING = Reason.of("event.pending")

# An accepted event (`a`, of activity_event) that is not settled yet: it has no award entry and no dead letter
# waiting for an operator accounts for it. One definition for the pending sweep, the console's count of
# waiting events and reconcile's check, so the three never disagree on what "waiting" means.
UNSETTLED = (
    "NOT EXISTS (SELECT 1 FROM ledger_transaction t"
    " WHERE t.kind = 'award' AND t.source = a.source AND t.event_id = a.event_id)"
    " AND NOT EXISTS (SELECT 1 FROM dead_letter d"
    " WHERE d.source = a.source AND d.event_id = a.event_id AND d.retried_at IS NULL)"
)


def _dead(error: str) -> Reason:
    return Reason.of("event.dead_lettered", error=error)


class PointsQueries:
    """What became of an event, and which stored events wait to be scored."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def event_status(self, source: str, event_id: str) -> EventStatus | None:
        row = await self._conn.fetchrow(
            "SELECT a.category, a.rider_id, t.available_delta, t.reason, t.reason_code, t.reason_params,"
            "       t.rule_id, t.rule_version,"
            "       t.tx_id IS NOT NULL AS scored, d.reason AS dead_reason"
            "  FROM activity_event a"
            "  LEFT JOIN ledger_transaction t"
            "    ON t.kind = 'award' AND t.source = a.source AND t.event_id = a.event_id"
            "  LEFT JOIN LATERAL (SELECT reason FROM dead_letter d WHERE d.source = a.source"
            "                     AND d.event_id = a.event_id AND d.retried_at IS NULL"
            "                     ORDER BY d.dead_letter_id DESC LIMIT 1) d ON true"
            " WHERE a.source = $1 AND a.event_id = $2",
            source,
            event_id,
        )
        if row is not None:
            if not row["scored"] and row["dead_reason"] is not None:
                return EventStatus(
                    "dead_lettered", row["category"], None, _dead(row["dead_reason"]), None, None, row["rider_id"]
                )
            if not row["scored"]:
                return EventStatus("pending", row["category"], None, PENDING, None, None, row["rider_id"])
            return EventStatus(
                "scored",
                row["category"],
                row["available_delta"],
                recorded(row["reason_code"], row["reason_params"], row["reason"], "award"),
                row["rule_id"],
                row["rule_version"],
                row["rider_id"],
            )
        dead = await self._conn.fetchrow(
            "SELECT reason FROM dead_letter WHERE source = $1 AND event_id = $2 AND retried_at IS NULL"
            " ORDER BY dead_letter_id DESC LIMIT 1",
            source,
            event_id,
        )
        if dead is None:
            return None
        return EventStatus("dead_lettered", None, None, _dead(dead["reason"]), None, None, None)

    async def scoring_status(self, window_s: int, cap: int) -> dict[str, Any]:
        """For the console: when the last award was recorded, and the HTTP events of the last ``window_s``
        seconds still waiting to be scored (at most ``cap`` counted; older ones are reconcile's)."""
        last = await self._conn.fetchval(
            "SELECT recorded_at FROM ledger_transaction WHERE kind = 'award' ORDER BY tx_id DESC LIMIT 1"
        )
        waiting = await self._conn.fetchrow(
            "SELECT count(*) AS n, min(received_at) AS oldest FROM ("
            " SELECT a.received_at FROM activity_event a"
            "  WHERE a.received_via = 'http' AND a.received_at > now() - make_interval(secs => $1)"
            f"   AND {UNSETTLED}"
            "  LIMIT $2) w",
            window_s,
            cap,
        )
        assert waiting is not None  # an aggregate always has its row
        return {"last_scored_at": last, "waiting": waiting["n"], "oldest_waiting_received_at": waiting["oldest"]}

    async def pending(self, limit: int, since: datetime | None, older_than: datetime) -> list[dict[str, Any]]:
        """Events accepted over HTTP in [since, older_than) that have no award entry yet and are not
        dead letters waiting for an operator, oldest first. (An event that came over Kafka was recorded and
        scored in one transaction: it never waits.)"""
        rows = await self._conn.fetch(
            "SELECT a.event, a.received_at FROM activity_event a"
            " WHERE a.received_via = 'http' AND a.received_at < $2"
            "   AND ($3::timestamptz IS NULL OR a.received_at >= $3)"
            f"  AND {UNSETTLED}"
            " ORDER BY a.received_at LIMIT $1",
            limit,
            older_than,
            since,
        )
        return [dict(r) for r in rows]


def _snapshot_id(snapshot: str) -> str:
    # A statement that takes no parameters: the id is PostgreSQL's own (hex digits and dashes), checked anyway.
    if not snapshot or any(c not in "0123456789ABCDEFabcdef-" for c in snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    return snapshot


def _transactions_since(n: int) -> str:
    return f"(SELECT tx_id FROM ledger_transaction WHERE recorded_at > ${n})"


def _riders_since(n: int) -> str:
    """The riders of the transactions recorded since ``$n`` (their whole history is checked again)."""
    return f"(SELECT DISTINCT rider_id FROM ledger_transaction WHERE recorded_at > ${n} AND rider_id IS NOT NULL)"


def _accounts_since(n: int) -> str:
    return (
        f"(SELECT 'rider:' || r.rider_id || s.side FROM {_riders_since(n)} r"
        " CROSS JOIN (VALUES (':available'), (':held')) AS s(side))"
    )


class ReconcileStore:
    """The reconciliation checks, over the whole ledger or, given ``since``, over what changed since then:
    the transactions recorded since (and their events, redemptions and lot links) and the whole history
    of the riders they touched. A scoped check costs what changed, not what the ledger holds; what it
    cannot see (a row changed with no transaction, as an owner's hand edit) is the whole run's to find."""

    def __init__(self, conn: asyncpg.Connection, since: datetime | None = None) -> None:
        self._conn = conn
        self._since = since

    def _where(self, condition: str) -> str:
        return f" WHERE {condition}" if self._since else ""

    def _and(self, condition: str) -> str:
        return f" AND {condition}" if self._since else ""

    def _once(self) -> str:
        """A scoped statement's parts are computed once each: the rows recorded since ``since`` are newer
        than the table's statistics, so the planner takes them for one row and would compute a part
        again for every row of another (a nested loop: 3.7 s instead of 10 ms over 1,000 riders)."""
        return "MATERIALIZED " if self._since else ""

    def _scope(self) -> tuple[datetime, ...]:
        return (self._since,) if self._since else ()

    async def export_snapshot(self) -> tuple[str, datetime]:
        """This transaction's snapshot, for other connections to read the same (``adopt_snapshot``), and
        its time."""
        row = await self._conn.fetchrow("SELECT pg_export_snapshot() AS snapshot, now() AS at")
        assert row is not None
        return row["snapshot"], row["at"]

    async def adopt_snapshot(self, snapshot: str) -> None:
        """Read ``snapshot``, another transaction's (first in this read-only, repeatable-read transaction)."""
        await self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await self._conn.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'")

    async def balanced_transactions(self) -> Check:
        examined = await self._conn.fetchval(
            "SELECT count(*) FROM ledger_transaction" + self._where("recorded_at > $1"), *self._scope()
        )
        rows = await self._conn.fetch(
            "SELECT tx_id, sum(amount) AS total FROM ledger_posting"
            + self._where(f"tx_id IN {_transactions_since(1)}")
            + " GROUP BY tx_id HAVING sum(amount) <> 0 ORDER BY tx_id LIMIT 1000",
            *self._scope(),
        )
        return Check(
            "every transaction's postings sum to zero",
            examined,
            [f"transaction {r['tx_id']} sums to {r['total']}" for r in rows],
        )

    async def projection_matches_postings(self) -> Check:
        rows = await self._conn.fetch(
            # Summed by account first: the rider's id is then cut out of each account once, not once a posting.
            f"WITH by_account AS {self._once()}("
            "  SELECT account, sum(amount) AS total FROM ledger_posting WHERE account LIKE 'rider:%'"
            + self._and(f"account IN {_accounts_since(2)}")
            + " GROUP BY 1),"
            f" posted AS {self._once()}("
            "  SELECT substring(account FROM $1) AS rider_id,"
            "         sum(total) FILTER (WHERE account LIKE '%:available') AS available,"
            "         sum(total) FILTER (WHERE account LIKE '%:held') AS held"
            "    FROM by_account GROUP BY 1),"
            f" listed AS {self._once()}(SELECT rider_id, sum(available_delta) AS available FROM ledger_transaction"
            + self._where(f"rider_id IN {_riders_since(2)}")
            + " GROUP BY 1)"
            " SELECT coalesce(b.rider_id, p.rider_id) AS rider_id,"
            "        coalesce(b.available, 0) AS b_available, coalesce(p.available, 0) AS p_available,"
            "        coalesce(b.held, 0) AS b_held, coalesce(p.held, 0) AS p_held,"
            "        coalesce(l.available, 0) AS l_available"
            "   FROM (SELECT * FROM rider_balance"
            + self._where(f"rider_id IN {_riders_since(2)}")
            + ") AS b FULL JOIN posted p ON p.rider_id = b.rider_id"
            "   LEFT JOIN listed l ON l.rider_id = coalesce(b.rider_id, p.rider_id)",
            RIDER_ACCOUNT,
            *self._scope(),
        )
        problems = [
            f"rider {r['rider_id']}: balance says available {r['b_available']} held {r['b_held']}, postings say "
            f"{r['p_available']} and {r['p_held']}, history amounts sum to {r['l_available']}"
            for r in rows
            if (r["b_available"], r["b_held"]) != (r["p_available"], r["p_held"])
            or r["l_available"] != r["p_available"]
        ]
        return Check("every rider's postings sum to the projected balance and the history", len(rows), problems)

    async def never_negative(self) -> Check:
        rows = await self._conn.fetch(
            "SELECT account, min(running) AS lowest FROM ("
            "  SELECT account, sum(amount) OVER (PARTITION BY account ORDER BY tx_id, posting_no) AS running"
            "    FROM ledger_posting WHERE account LIKE 'rider:%'"
            + self._and(f"account IN {_accounts_since(1)}")
            + ") AS history GROUP BY account",
            *self._scope(),
        )
        problems = [f"{r['account']} went down to {r['lowest']}" for r in rows if r["lowest"] < 0]
        return Check("no rider account is ever negative at any point of its history", len(rows), problems)

    async def awards_are_grounded(self) -> Check:
        examined = await self._conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'award'" + self._and("recorded_at > $1"),
            *self._scope(),
        )
        rows = await self._conn.fetch(
            "SELECT t.tx_id, t.source, t.event_id, t.rule_id, t.rule_version, a.source IS NULL AS no_event,"
            "       (t.rule_id IS NOT NULL AND r.rules_id IS NULL) AS no_rule"
            "  FROM ledger_transaction t"
            "  LEFT JOIN activity_event a ON a.source = t.source AND a.event_id = t.event_id"
            "  LEFT JOIN rules_version r ON r.rules_id = t.rule_id AND r.version = t.rule_version"
            " WHERE t.kind = 'award' AND (a.source IS NULL OR (t.rule_id IS NOT NULL AND r.rules_id IS NULL)"
            "       OR (t.rule_id IS NULL AND t.available_delta <> 0))"
            + self._and("t.recorded_at > $1")
            + " ORDER BY t.tx_id LIMIT 1000",
            *self._scope(),
        )
        problems = []
        for r in rows:
            what = "no stored event" if r["no_event"] else f"unknown rules {r['rule_id']} v{r['rule_version']}"
            if not r["no_event"] and not r["no_rule"]:
                what = "points awarded without a rule"
            problems.append(f"award {r['tx_id']} for {r['source']}/{r['event_id']}: {what}")
        return Check("every award links to a stored event and a rules version", examined, problems)

    async def redemptions_match_entries(self) -> Check:
        rows = await self._conn.fetch(
            "SELECT r.redemption_id, r.status,"
            "       array_agg(t.kind ORDER BY t.tx_id) AS steps"
            "  FROM redemption r LEFT JOIN ledger_transaction t"
            "    ON t.event_id = r.redemption_id AND t.source = 'warmbee/redemption'"
            + self._where(
                "r.created_at > $1 OR r.redemption_id IN (SELECT event_id FROM ledger_transaction"
                " WHERE recorded_at > $1 AND source = 'warmbee/redemption')"
            )
            + " GROUP BY r.redemption_id, r.status",
            *self._scope(),
        )
        return Check(
            "every redemption's status matches its ledger entries",
            len(rows),
            redemption_problems([(r["redemption_id"], r["status"], r["steps"]) for r in rows]),
        )

    async def accepted_events_settled(self, stuck_after_s: int) -> Check:
        # Scoped: an event received before since - stuck_after was stuck already when ``since`` was checked.
        recent = "received_at > $2::timestamptz - make_interval(secs => $1)"
        examined = await self._conn.fetchval(
            "SELECT count(*) FROM activity_event" + self._where(recent),
            *((stuck_after_s, *self._scope()) if self._since else ()),
        )
        rows = await self._conn.fetch(
            "SELECT a.source, a.event_id, a.received_at FROM activity_event a"
            " WHERE a.received_at < now() - make_interval(secs => $1)"
            f" AND {UNSETTLED}"  # a dead letter accounts for an event: it waits for an operator
            + self._and(f"a.{recent}")
            + " ORDER BY a.received_at LIMIT 1000",
            stuck_after_s,
            *self._scope(),
        )
        return Check(
            f"every accepted event is scored (or dead-lettered) within {stuck_after_s} s",
            examined,
            [f"{r['source']}/{r['event_id']} accepted {r['received_at'].isoformat()} is not scored" for r in rows],
        )

    async def disputes_match_adjustments(self) -> Check:
        """Every upheld dispute has exactly one adjustment, of its amount, the one it names; every
        adjustment of a dispute (source warmbee/disputes) belongs to an upheld dispute that names it."""
        examined = await self._conn.fetchval("SELECT count(*) FROM dispute WHERE outcome = 'upheld'")
        upheld = await self._conn.fetch(
            "SELECT d.dispute_id, d.amount, d.adjustment_entry_id, count(t.tx_id) AS n,"
            "       coalesce(sum(t.available_delta), 0) AS total, coalesce(bool_or(t.tx_id = d.adjustment_entry_id),"
            "       false) AS linked"
            "  FROM dispute d LEFT JOIN ledger_transaction t"
            "    ON t.source = $1 AND t.event_id = d.dispute_id AND t.kind = 'adjustment'"
            " WHERE d.outcome = 'upheld' GROUP BY d.dispute_id, d.amount, d.adjustment_entry_id"
            " HAVING count(t.tx_id) <> 1 OR coalesce(sum(t.available_delta), 0) <> d.amount"
            "     OR NOT coalesce(bool_or(t.tx_id = d.adjustment_entry_id), false)"
            " ORDER BY d.dispute_id LIMIT 1000",
            DISPUTES_SOURCE,
        )
        orphans = await self._conn.fetch(
            "SELECT t.tx_id, t.event_id FROM ledger_transaction t"
            "  LEFT JOIN dispute d"
            "    ON d.dispute_id = t.event_id AND d.outcome = 'upheld' AND d.adjustment_entry_id = t.tx_id"
            " WHERE t.source = $1 AND d.dispute_id IS NULL ORDER BY t.tx_id LIMIT 1000",
            DISPUTES_SOURCE,
        )
        problems = [
            f"dispute {r['dispute_id']} upheld for {r['amount']} has {r['n']} adjustment(s) of {r['total']}"
            + ("" if r["linked"] else f", none of them its entry {r['adjustment_entry_id']}")
            for r in upheld
        ]
        problems += [
            f"adjustment {r['tx_id']} names dispute {r['event_id']}, which is not upheld with it" for r in orphans
        ]
        return Check(
            "every upheld dispute has exactly one adjustment, and every such adjustment its dispute", examined, problems
        )

    async def lots_match_their_entries(self) -> Check:
        """Every lot is what its credit and the links of the entries that moved it make of it: what is
        left is the credit less what was paid, adjusted away or lapsed; what is held, what holds took less
        what their settlements gave back or paid; a lapsed lot lapsed once, and is empty."""
        examined = await self._conn.fetchval(
            "SELECT count(*) FROM ledger_lot" + self._where(f"rider_id IN {_riders_since(1)}"), *self._scope()
        )
        rows = await self._conn.fetch(
            "SELECT l.lot_id, l.amount, l.remaining, l.held, l.lapse_tx_id, c.available_delta AS credited,"
            "       c.rider_id = l.rider_id AS same_rider, x.consumed, x.held_now, x.lapses, x.lapse_tx"
            "  FROM ledger_lot l JOIN ledger_transaction c ON c.tx_id = l.lot_id"
            "  CROSS JOIN LATERAL ("
            "    SELECT coalesce(sum(k.amount) FILTER (WHERE t.kind IN ('redeem', 'adjustment', 'lapse')), 0)"
            "           AS consumed,"
            "           coalesce(sum(k.amount) FILTER (WHERE t.kind = 'hold'), 0)"
            "         - coalesce(sum(k.amount) FILTER (WHERE t.kind IN ('release', 'expire', 'redeem')), 0)"
            "           AS held_now,"
            "           count(*) FILTER (WHERE t.kind = 'lapse') AS lapses,"
            "           max(t.tx_id) FILTER (WHERE t.kind = 'lapse') AS lapse_tx"
            "      FROM ledger_lot_take k JOIN ledger_transaction t ON t.tx_id = k.tx_id"
            "     WHERE k.lot_id = l.lot_id) AS x"
            " WHERE NOT (c.rider_id = l.rider_id AND c.available_delta = l.amount"
            "            AND l.remaining = l.amount - x.consumed AND l.held = x.held_now AND x.lapses <= 1"
            "            AND l.lapse_tx_id IS NOT DISTINCT FROM x.lapse_tx)"
            + self._and(f"l.rider_id IN {_riders_since(1)}")
            + " ORDER BY l.lot_id LIMIT 1000",
            *self._scope(),
        )
        problems = [
            f"lot {r['lot_id']}: credit of {r['credited']} (same rider: {r['same_rider']}), amount {r['amount']},"
            f" {r['remaining']} left and {r['held']} held, but its links say {r['amount'] - r['consumed']} left and"
            f" {r['held_now']} held, {r['lapses']} lapse(s) (entry {r['lapse_tx']}, lot says {r['lapse_tx_id']})"
            for r in rows
        ]
        return Check("every lot is what its credit and the entries that took from it make of it", examined, problems)

    async def lot_links_match_their_entries(self) -> Check:
        """Every entry's lot links are within what it moved (a lapse: exactly), and every settlement of a
        hold moved exactly the lots and points its hold took."""
        examined = await self._conn.fetchval(
            "SELECT count(DISTINCT tx_id) FROM ledger_lot_take" + self._where(f"tx_id IN {_transactions_since(1)}"),
            *self._scope(),
        )
        over = await self._conn.fetch(
            "SELECT k.tx_id, t.kind, sum(k.amount) AS linked,"
            "       (SELECT max(abs(p.amount)) FROM ledger_posting p WHERE p.tx_id = k.tx_id) AS moved"
            "  FROM ledger_lot_take k JOIN ledger_transaction t ON t.tx_id = k.tx_id"
            + self._where("t.recorded_at > $1")
            + " GROUP BY k.tx_id, t.kind"
            " HAVING sum(k.amount) > (SELECT max(abs(p.amount)) FROM ledger_posting p WHERE p.tx_id = k.tx_id)"
            "     OR (t.kind = 'lapse' AND sum(k.amount) <> -min(t.available_delta))"
            "     OR t.kind NOT IN ('hold', 'release', 'expire', 'redeem', 'adjustment', 'lapse')"
            " ORDER BY k.tx_id LIMIT 1000",
            *self._scope(),
        )
        unlike = await self._conn.fetch(
            "WITH links AS ("
            "  SELECT t.tx_id, t.kind, t.event_id, array_agg(k.lot_id || ':' || k.amount ORDER BY k.lot_id) AS lots"
            "    FROM ledger_transaction t JOIN ledger_lot_take k ON k.tx_id = t.tx_id"
            "   WHERE t.source = 'warmbee/redemption'"
            + self._and(
                "t.event_id IN (SELECT event_id FROM ledger_transaction"
                " WHERE recorded_at > $1 AND source = 'warmbee/redemption')"
            )
            + " GROUP BY t.tx_id, t.kind, t.event_id)"
            " SELECT s.tx_id, s.kind, s.event_id, s.lots AS settled, h.lots AS held"
            "   FROM ledger_transaction st"
            "   JOIN ledger_transaction ht ON ht.source = st.source AND ht.event_id = st.event_id AND ht.kind = 'hold'"
            "   LEFT JOIN links s ON s.tx_id = st.tx_id LEFT JOIN links h ON h.tx_id = ht.tx_id"
            "  WHERE st.source = 'warmbee/redemption' AND st.kind IN ('release', 'expire', 'redeem')"
            "    AND s.lots IS DISTINCT FROM h.lots"
            + self._and("st.recorded_at > $1")
            + "  ORDER BY st.tx_id LIMIT 1000",
            *self._scope(),
        )
        problems = [f"{r['kind']} {r['tx_id']} links {r['linked']} points of lots, it moved {r['moved']}" for r in over]
        problems += [
            f"{r['kind']} {r['tx_id']} of redemption {r['event_id']} moved lots {r['settled']}, its hold {r['held']}"
            for r in unlike
        ]
        return Check("every debit's lot links are within its amount, a settlement's are its hold's", examined, problems)

    async def lots_add_up_to_balances(self) -> Check:
        """Per rider, the points left in lots and the points in none (credits without a lot, less what
        payments and negative adjustments took beyond their lot links) add up to available plus held."""
        if self._since:  # the parts are joined by hash: a nested loop over them is touched riders squared
            await self._conn.execute("SET LOCAL enable_nestloop = off")
        rows = await self._conn.fetch(
            f"WITH in_lots AS {self._once()}(SELECT rider_id, sum(remaining) AS pts, sum(held) AS held FROM ledger_lot"
            + self._where(f"rider_id IN {_riders_since(1)}")
            + " GROUP BY 1),"
            f" linked AS {self._once()}(SELECT tx_id, sum(amount) AS n FROM ledger_lot_take"
            + self._where(f"tx_id IN (SELECT tx_id FROM ledger_transaction WHERE rider_id IN {_riders_since(1)})")
            + " GROUP BY 1),"
            f" in_none AS {self._once()}("
            "  SELECT t.rider_id,"
            "         sum(CASE WHEN t.available_delta > 0 AND t.kind IN ('award', 'adjustment')"
            "                  THEN CASE WHEN l.lot_id IS NULL THEN t.available_delta ELSE 0 END"
            "                  WHEN t.kind IN ('adjustment', 'lapse') THEN t.available_delta + coalesce(k.n, 0)"
            "                  WHEN t.kind = 'redeem' THEN -(SELECT max(abs(p.amount)) FROM ledger_posting p"
            "                                               WHERE p.tx_id = t.tx_id) + coalesce(k.n, 0)"
            "                  ELSE 0 END) AS pts"
            "    FROM ledger_transaction t LEFT JOIN ledger_lot l ON l.lot_id = t.tx_id"
            "    LEFT JOIN linked k ON k.tx_id = t.tx_id"
            + self._where(f"t.rider_id IN {_riders_since(1)}")
            + " GROUP BY 1)"
            " SELECT b.rider_id, b.available, b.held, coalesce(i.pts, 0) AS lots_left,"
            "        coalesce(i.held, 0) AS lots_held,"
            "        coalesce(n.pts, 0) AS none_left"
            "   FROM rider_balance b LEFT JOIN in_lots i ON i.rider_id = b.rider_id"
            "   LEFT JOIN in_none n ON n.rider_id = b.rider_id"
            "  WHERE (b.available + b.held <> coalesce(i.pts, 0) + coalesce(n.pts, 0) OR coalesce(i.held, 0) > b.held)"
            + self._and(f"b.rider_id IN {_riders_since(1)}")
            + "  ORDER BY b.rider_id LIMIT 1000",
            *self._scope(),
        )
        if self._since:
            await self._conn.execute("SET LOCAL enable_nestloop = on")
        examined = await self._conn.fetchval(
            "SELECT count(*) FROM rider_balance" + self._where(f"rider_id IN {_riders_since(1)}"), *self._scope()
        )
        problems = [
            f"rider {r['rider_id']}: available {r['available']} + held {r['held']}, but {r['lots_left']} left in lots"
            f" ({r['lots_held']} held) and {r['none_left']} in none"
            for r in rows
        ]
        return Check("every rider's lots and points in no lot add up to available plus held", examined, problems)
