"""Lots: what each credit under a lapse policy still holds, and which lots every debit took. Pure.

A lot is good until the end of its ``lapses_on`` day. Points that are the rider's (``remaining``) are free
or held; only free points are taken, soonest-lapsing first (then the oldest lot), and points in no lot
(credits without a lapse policy, which never lapse) after every lot. A hold moves points of its lots from
free to held; its release or expiry gives exactly those back to the same lots; its confirmation pays
them. A lot lapses only what is left of it, once, and only when none of it is held: a hold over a lot's
last day defers its lapse until the hold ends (a redemption's hold lasts minutes to hours), so points
given back by a late release lapse with the rest of the lot, in its one lapse entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from libs.ledger.model import EntryKind, LedgerError, LedgerTransaction, LotTerms

__all__ = ["Lot", "LotBook", "LotTerms", "Take", "allocate", "allocates", "needs_lots", "settles"]


@dataclass(slots=True)
class Lot:
    lot_id: int
    rider_id: str
    lapses_on: date
    remaining: int
    held: int = 0

    @property
    def free(self) -> int:
        return self.remaining - self.held


Take = tuple[int, int]  # (lot_id, points)


def allocate(lots: Iterable[Lot], amount: int) -> list[Take]:
    """The lots a debit of ``amount`` takes, soonest-lapsing first, never more than a lot has free; the
    part no lot covers comes from points in no lot (the ledger's balance check refuses an overdraft)."""
    if amount < 0:
        raise LedgerError("a debit takes a positive amount")
    takes: list[Take] = []
    left = amount
    for lot in sorted(lots, key=lambda lot: (lot.lapses_on, lot.lot_id)):
        if left == 0:
            break
        if (n := min(lot.free, left)) > 0:
            takes.append((lot.lot_id, n))
            left -= n
    return takes


@dataclass(slots=True)
class LotBook:
    """The lots of some riders as a batch of entries moves them, in the batch's order: ``apply`` each
    newly recorded entry, then write ``changed`` lots and ``links``."""

    lots: dict[int, Lot]
    hold_takes: dict[str, list[Take]]  # a hold's idempotency key -> the lots it took (this batch's too)
    links: list[tuple[int, int, int]] = field(default_factory=list)  # (tx_id, lot_id, points)
    changed: set[int] = field(default_factory=set)
    lapsed: dict[int, int] = field(default_factory=dict)  # lot_id -> the lapse's tx_id
    _of_rider: dict[str, list[Lot]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A debit chooses among its rider's lots only: a batch of 1,000 debits need not scan every lot 1,000 times.
        for lot in self.lots.values():
            self._of_rider.setdefault(lot.rider_id, []).append(lot)

    def apply(self, tx: LedgerTransaction, tx_id: int) -> None:
        kind, delta = tx.kind, tx.available_delta
        if kind is EntryKind.LAPSE:
            self._lapse(tx, tx_id)
        elif allocates(tx):
            takes = allocate(self._of_rider.get(tx.rider_id, ()), -delta)
            for lot_id, n in takes:
                self._move(tx_id, lot_id, n, hold=kind is EntryKind.HOLD)
            if kind is EntryKind.HOLD:
                self.hold_takes[tx.idempotency_key] = takes
        elif settles(tx) and tx.settles is not None:
            for lot_id, n in self.hold_takes.get(tx.settles, ()):
                self._settle(tx_id, lot_id, n, paid=kind is EntryKind.REDEEM)

    def _move(self, tx_id: int, lot_id: int, n: int, *, hold: bool) -> None:
        lot = self.lots[lot_id]
        if n > lot.free:
            raise LedgerError(f"lot {lot_id} has {lot.free} points free, not {n}")
        if hold:
            lot.held += n
        else:
            lot.remaining -= n
        self._link(tx_id, lot_id, n)

    def _settle(self, tx_id: int, lot_id: int, n: int, *, paid: bool) -> None:
        lot = self.lots[lot_id]
        if n > lot.held:
            raise LedgerError(f"lot {lot_id} holds {lot.held} points, not {n}")
        lot.held -= n
        if paid:
            lot.remaining -= n
        self._link(tx_id, lot_id, n)

    def _lapse(self, tx: LedgerTransaction, tx_id: int) -> None:
        if tx.lot_id is None or tx.lot_id not in self.lots:
            raise LedgerError(f"a lapse names the lot it lapses ({tx.idempotency_key})")
        lot = self.lots[tx.lot_id]
        if lot.held or -tx.available_delta != lot.remaining:
            raise LedgerError(f"lot {lot.lot_id} lapses what is left of it ({lot.remaining}), none of it held")
        self._move(tx_id, lot.lot_id, lot.remaining, hold=False)
        self.lapsed[lot.lot_id] = tx_id

    def _link(self, tx_id: int, lot_id: int, n: int) -> None:
        self.links.append((tx_id, lot_id, n))
        self.changed.add(lot_id)


def allocates(tx: LedgerTransaction) -> bool:
    """Whether an entry chooses among its rider's lots, soonest-lapsing first: a hold or a negative adjustment."""
    return tx.kind is EntryKind.HOLD or (tx.kind is EntryKind.ADJUSTMENT and tx.available_delta < 0)


def settles(tx: LedgerTransaction) -> bool:
    """Whether an entry settles a hold, moving the lots that hold took: a release, an expiry, a confirmation."""
    return tx.kind in (EntryKind.RELEASE, EntryKind.EXPIRE, EntryKind.REDEEM) and tx.settles is not None


def needs_lots(tx: LedgerTransaction) -> bool:
    """Whether an entry moves lots other than its own new one: a debit of free points, a lapse or a settlement."""
    return allocates(tx) or settles(tx) or tx.kind is EntryKind.LAPSE
