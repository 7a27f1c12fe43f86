"""The lots' tables (``ledger_lot``, ``ledger_lot_take``), written only from ``LedgerStore.append`` on the
entry's own connection and transaction, after the entries are recorded and their riders' balance rows
locked: whoever moves a rider's lots holds that rider's lock, so the reads here need no locks of their own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from libs.ledger.lots import Lot, LotBook, Take, allocates, needs_lots
from libs.ledger.model import LedgerTransaction

_OPEN = """
INSERT INTO ledger_lot (lot_id, rider_id, amount, remaining, awarded_on, lapses_on)
SELECT l.id, l.rider, l.amount, l.amount, l.awarded, l.lapses
  FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::date[], $5::date[]) AS l(id, rider, amount, awarded, lapses)
"""

_LOTS = """
SELECT lot_id, rider_id, lapses_on, remaining, held FROM ledger_lot
 WHERE (rider_id = ANY($1::text[]) AND remaining > 0) OR lot_id = ANY($2::bigint[])
"""

_HOLD_TAKES = """
SELECT t.idempotency_key, k.lot_id, k.amount FROM ledger_transaction t JOIN ledger_lot_take k ON k.tx_id = t.tx_id
 WHERE t.idempotency_key = ANY($1::text[]) ORDER BY k.lot_id
"""

_MOVE = """
UPDATE ledger_lot AS l SET remaining = m.remaining, held = m.held, lapse_tx_id = coalesce(m.lapse, l.lapse_tx_id)
  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS m(id, remaining, held, lapse)
 WHERE l.lot_id = m.id
"""

_LINK = """
INSERT INTO ledger_lot_take (tx_id, lot_id, amount)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
"""


@dataclass(frozen=True, slots=True)
class DueLot:
    """A lot past its last good day with points left, none of them held: what its lapse takes."""

    lot_id: int
    rider_id: str
    remaining: int
    awarded_on: date
    lapses_on: date
    category: str | None = None  # the category of the credit that made the lot


@dataclass(frozen=True, slots=True)
class Lapsing:
    """Points of a rider that lapse after one day unless spent (free points of lots not lapsed yet)."""

    on: date
    points: int


@dataclass(frozen=True, slots=True)
class Warning:
    """Riders to warn: the free points of theirs that lapse after ``on``, and the lots now warned of."""

    rider_id: str
    on: date
    points: int
    lot_ids: tuple[int, ...]


_DUE = """
SELECT lot_id, rider_id, lapses_on FROM ledger_lot
 WHERE remaining > 0 AND lapses_on < $1 AND (lapses_on, lot_id) > ($2::date, $3::bigint)
 ORDER BY lapses_on, lot_id LIMIT $4
"""

_LAPSABLE = """
SELECT l.lot_id, l.rider_id, l.remaining, l.awarded_on, l.lapses_on, t.category
  FROM ledger_lot l JOIN ledger_transaction t ON t.tx_id = l.lot_id
 WHERE l.lot_id = ANY($1::bigint[]) AND l.remaining > 0 AND l.held = 0 AND l.lapses_on < $2
 ORDER BY l.lot_id
"""

_LAPSING = """
SELECT rider_id, lapses_on, points FROM (
    SELECT rider_id, lapses_on, sum(remaining - held)::bigint AS points,
           row_number() OVER (PARTITION BY rider_id ORDER BY lapses_on) AS n
      FROM ledger_lot WHERE rider_id = ANY($1::text[]) AND remaining > held GROUP BY rider_id, lapses_on
) AS days WHERE n <= $2 ORDER BY rider_id, lapses_on
"""

# The lots of every (rider, day) that lapses within the horizon and has a lot not warned of yet; all of
# that day's free points are in the warning, and its lots are marked warned in the same statement.
_WARN = """
WITH due AS (
    SELECT DISTINCT rider_id, lapses_on FROM ledger_lot
     WHERE warned_at IS NULL AND remaining > held AND lapses_on >= $1 AND lapses_on <= $2
     ORDER BY rider_id, lapses_on LIMIT $3
), warned AS (
    UPDATE ledger_lot AS l SET warned_at = now()
      FROM due WHERE l.rider_id = due.rider_id AND l.lapses_on = due.lapses_on AND l.warned_at IS NULL
       AND l.remaining > l.held
    RETURNING l.lot_id, l.rider_id, l.lapses_on
)
SELECT l.rider_id, l.lapses_on, sum(l.remaining - l.held)::bigint AS points,
       array_agg(w.lot_id ORDER BY w.lot_id) FILTER (WHERE w.lot_id IS NOT NULL) AS warned
  FROM ledger_lot l JOIN due ON l.rider_id = due.rider_id AND l.lapses_on = due.lapses_on
  LEFT JOIN warned w ON w.lot_id = l.lot_id
 WHERE l.remaining > l.held
 GROUP BY l.rider_id, l.lapses_on ORDER BY l.rider_id, l.lapses_on
"""


class LotStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def apply(self, entries: Sequence[tuple[LedgerTransaction, int]]) -> None:
        """What newly recorded entries (with their tx_ids, in the batch's order) do to lots: credits under
        a lapse policy open theirs, debits take from the soonest-lapsing, settlements give back or pay."""
        opened = [(tx, tx_id) for tx, tx_id in entries if tx.lot is not None]
        if opened:
            await self._open(opened)
        movers = [(tx, tx_id) for tx, tx_id in entries if needs_lots(tx)]
        if not movers:
            return
        book = await self._book(movers)
        if not book.lots:
            return  # no lot is involved: the points moved are in no lot
        for tx, tx_id in movers:
            book.apply(tx, tx_id)
        await self._write(book)

    async def due(self, today: date, after: tuple[date, int], limit: int) -> list[tuple[int, str, date]]:
        """Lots whose last good day is before ``today`` with points left, after ``after`` (lapses_on,
        lot_id): (lot_id, rider_id, lapses_on). Held ones are among them; ``lapsable`` leaves them out."""
        rows = await self._conn.fetch(_DUE, today, after[0], after[1], limit)
        return [(r["lot_id"], r["rider_id"], r["lapses_on"]) for r in rows]

    async def overdue(self, today: date) -> int:
        """Lots past their last good day with points left and none held: what the lapse job has yet to do."""
        return int(
            await self._conn.fetchval(
                "SELECT count(*) FROM ledger_lot WHERE remaining > 0 AND held = 0 AND lapses_on < $1", today
            )
        )

    async def lapsable(self, lot_ids: Sequence[int], today: date) -> list[DueLot]:
        """Of ``lot_ids``, those to lapse now: read under their riders' locks, so what is left is exact."""
        rows = await self._conn.fetch(_LAPSABLE, list(lot_ids), today)
        return [
            DueLot(r["lot_id"], r["rider_id"], r["remaining"], r["awarded_on"], r["lapses_on"], r["category"])
            for r in rows
        ]

    async def lapsing(self, riders: Sequence[str], dates: int = 3) -> dict[str, list[Lapsing]]:
        """Per rider, the next ``dates`` days after which some of its free points lapse, soonest first
        (held points lapse only if their hold ends; a day already past lapses at the job's next run)."""
        rows = await self._conn.fetch(_LAPSING, list(riders), dates)
        found: dict[str, list[Lapsing]] = {}
        for r in rows:
            found.setdefault(r["rider_id"], []).append(Lapsing(r["lapses_on"], r["points"]))
        return found

    async def warn(self, today: date, until: date, limit: int) -> list[Warning]:
        """Mark warned the lots lapsing from ``today`` to ``until`` not warned of yet, and return, per
        rider and day, what to tell them (a day's points in one warning, however many lots)."""
        rows = await self._conn.fetch(_WARN, today, until, limit)
        return [Warning(r["rider_id"], r["lapses_on"], r["points"], tuple(r["warned"] or ())) for r in rows]

    async def _open(self, opened: list[tuple[LedgerTransaction, int]]) -> None:
        await self._conn.execute(
            _OPEN,
            [tx_id for _, tx_id in opened],
            [tx.rider_id for tx, _ in opened],
            [tx.available_delta for tx, _ in opened],
            [tx.lot.awarded_on for tx, _ in opened if tx.lot],
            [tx.lot.lapses_on for tx, _ in opened if tx.lot],
        )

    async def _book(self, movers: list[tuple[LedgerTransaction, int]]) -> LotBook:
        hold_takes: dict[str, list[Take]] = {}
        settled = sorted({tx.settles for tx, _ in movers if tx.settles})
        if settled:
            for r in await self._conn.fetch(_HOLD_TAKES, settled):
                hold_takes.setdefault(r["idempotency_key"], []).append((r["lot_id"], r["amount"]))
        # Only a hold or a debit chooses among its rider's lots; a lapse and a settlement name theirs. A page
        # of the lapse job thus reads its 1,000 lots, not every open lot of their riders (about 10 times as
        # many rows with 10 lots a rider: bench/lapsing.py).
        riders = sorted({tx.rider_id for tx, _ in movers if allocates(tx)})
        named = sorted({lot for takes in hold_takes.values() for lot, _ in takes} | _lapsing(movers))
        rows = await self._conn.fetch(_LOTS, riders, named)
        lots = {r["lot_id"]: Lot(r["lot_id"], r["rider_id"], r["lapses_on"], r["remaining"], r["held"]) for r in rows}
        return LotBook(lots, hold_takes)

    async def _write(self, book: LotBook) -> None:
        changed = [book.lots[lot_id] for lot_id in sorted(book.changed)]
        await self._conn.execute(
            _MOVE,
            [lot.lot_id for lot in changed],
            [lot.remaining for lot in changed],
            [lot.held for lot in changed],
            [book.lapsed.get(lot.lot_id) for lot in changed],
        )
        await self._conn.execute(
            _LINK, [tx for tx, _, _ in book.links], [lot for _, lot, _ in book.links], [n for _, _, n in book.links]
        )


def _lapsing(movers: list[tuple[LedgerTransaction, int]]) -> set[int]:
    return {tx.lot_id for tx, _ in movers if tx.lot_id is not None}
