"""SQL of the points service: rider counters (for caps and once-only limits) and rule versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from libs.platform.locks import SCRATCH_SETTING, lock
from services.points.domain.hazards import EarlierReport, HazardSearch
from services.points.domain.rules import Rules

CounterKey = tuple[str, str]  # (rider_id, counter)


class PointsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock(self, names: Sequence[str]) -> None:
        """Riders first, then hazard grid cells: the order every scorer uses."""
        await lock(self._conn, names)

    async def hazard_reports_in(self, searches: Sequence[HazardSearch]) -> list[EarlierReport]:
        """Reports paid in full inside any of the search boxes and windows, first scored first: one
        query for a whole batch (the caller picks, per report, those really within its radius)."""
        if not searches:
            return []
        rows = await self._conn.fetch(
            "SELECT DISTINCT h.seq, h.report_id, h.rider_id, h.lat, h.lon, h.reported_at"
            "  FROM unnest($1::float8[], $2::float8[], $3::float8[], $4::float8[], $5::timestamptz[],"
            "              $6::timestamptz[]) AS b(lat0, lat1, lon0, lon1, t0, t1)"
            "  CROSS JOIN LATERAL (SELECT * FROM hazard_report r"
            "   WHERE point(r.lon, r.lat) <@ box(point(b.lon0, b.lat0), point(b.lon1, b.lat1))"
            "     AND r.reported_at BETWEEN b.t0 AND b.t1) AS h"
            " ORDER BY h.seq",
            [x.lat_min for x in searches],
            [x.lat_max for x in searches],
            [x.lon_min for x in searches],
            [x.lon_max for x in searches],
            [x.reported_from for x in searches],
            [x.reported_to for x in searches],
        )
        return [EarlierReport(r["report_id"], r["rider_id"], r["lat"], r["lon"], r["reported_at"]) for r in rows]

    async def add_hazard_reports(self, reports: Sequence[tuple[str, str, EarlierReport]]) -> None:
        """Register reports paid in full: (source, event_id, report), in the order they were scored."""
        if not reports:
            return
        await self._conn.execute(
            "INSERT INTO hazard_report (source, event_id, report_id, rider_id, lat, lon, reported_at)"
            " SELECT s, e, r, d, la, lo, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],"
            " $6::float8[],"
            " $7::timestamptz[]) WITH ORDINALITY AS u(s, e, r, d, la, lo, t, i) ORDER BY i"
            " ON CONFLICT (source, event_id) DO NOTHING",
            [s for s, _, _ in reports],
            [e for _, e, _ in reports],
            [r.report_id for _, _, r in reports],
            [r.rider_id for _, _, r in reports],
            [r.lat for _, _, r in reports],
            [r.lon for _, _, r in reports],
            [r.reported_at for _, _, r in reports],
        )

    async def counters(self, keys: Iterable[CounterKey]) -> dict[CounterKey, int]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            "SELECT c.rider_id, c.counter, c.value FROM rider_counter c"
            " JOIN unnest($1::text[], $2::text[]) AS k(r, n) ON c.rider_id = k.r AND c.counter = k.n",
            [k[0] for k in wanted],
            [k[1] for k in wanted],
        )
        return {(r["rider_id"], r["counter"]): r["value"] for r in rows}

    async def add_to_counters(self, increments: Mapping[CounterKey, int]) -> None:
        keys = sorted(k for k, v in increments.items() if v)
        if not keys:
            return
        await self._conn.execute(
            "INSERT INTO rider_counter AS c (rider_id, counter, value)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
            " ON CONFLICT (rider_id, counter) DO UPDATE SET value = c.value + EXCLUDED.value",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [increments[k] for k in keys],
        )

    async def rules_versions(self) -> list[Rules]:
        rows = await self._conn.fetch("SELECT body FROM rules_version ORDER BY effective_from, version")
        return [Rules.model_validate(r["body"]) for r in rows]

    async def rules_version(self, rules_id: str, version: int) -> PublishedRules | None:
        row = await self._conn.fetchrow(
            "SELECT body, published_at, published_by FROM rules_version WHERE rules_id = $1 AND version = $2",
            rules_id,
            version,
        )
        return None if row is None else _published(row)

    async def published_rules(self) -> list[PublishedRules]:
        rows = await self._conn.fetch(
            "SELECT body, published_at, published_by FROM rules_version ORDER BY effective_from, version"
        )
        return [_published(r) for r in rows]

    async def publish_rules(self, rules: Rules, published_by: str | None) -> bool:
        """Store a rules version; False when that id and version exist already (versions are immutable)."""
        status = await self._conn.execute(
            "INSERT INTO rules_version (rules_id, version, effective_from, body, published_by)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rules_id, version) DO NOTHING",
            rules.rules_id,
            rules.version,
            rules.effective_from,
            rules.model_dump(mode="json"),
            published_by,
        )
        return status.endswith(" 1")


@dataclass(frozen=True, slots=True)
class PublishedRules:
    rules: Rules
    published_at: datetime
    published_by: str | None


def _published(row: asyncpg.Record) -> PublishedRules:
    return PublishedRules(Rules.model_validate(row["body"]), row["published_at"], row["published_by"])


# Tables that scoring writes; a scratch schema gets empty copies of them, and reads the rest
# (rules_version) from the live schema through the search path.
SCORING_TABLES = (
    "activity_event",
    "ledger_transaction",
    "ledger_posting",
    "ledger_lot",
    "ledger_lot_take",
    "rider_balance",
    "rider_counter",
    "hazard_report",
    "outbox",
)


class ScratchStore:
    """A throw-away schema inside the caller's transaction: scoring code runs unchanged against it,
    and the transaction's rollback removes it. The transaction takes none of the live scorers' locks
    (libs/platform/locks.py): what it writes, only it can see."""

    def __init__(self, conn: asyncpg.Connection, schema: str = "warmbee_scratch") -> None:
        self._conn = conn
        self._schema = schema

    async def enter(self) -> None:
        await self._conn.execute(f"SET LOCAL {SCRATCH_SETTING} = 'on'")
        await self._conn.execute(f"CREATE SCHEMA {self._schema}")
        for table in SCORING_TABLES:
            await self._conn.execute(f"CREATE TABLE {self._schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        await self._conn.execute(f"SET LOCAL search_path TO {self._schema}, public")

    async def leave(self) -> None:
        await self._conn.execute("SET LOCAL search_path TO public")

    async def scored_events(self, after_tx_id: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Live events in the order they were first scored: (award tx_id, event document)."""
        rows = await self._conn.fetch(
            "SELECT t.tx_id, a.event FROM public.ledger_transaction t"
            " JOIN public.activity_event a ON a.source = t.source AND a.event_id = t.event_id"
            " WHERE t.kind = 'award' AND t.tx_id > $1 ORDER BY t.tx_id LIMIT $2",
            after_tx_id,
            limit,
        )
        return [(r["tx_id"], r["event"]) for r in rows]

    async def events_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Live events that happened in [start, end): scored ones in the order first scored, then the rest."""
        rows = await self._conn.fetch(
            "SELECT a.event FROM public.activity_event a"
            " LEFT JOIN public.ledger_transaction t"
            "   ON t.kind = 'award' AND t.source = a.source AND t.event_id = a.event_id"
            " WHERE a.occurred_at >= $1 AND a.occurred_at < $2"
            " ORDER BY t.tx_id NULLS LAST, a.received_at",
            start,
            end,
        )
        return [r["event"] for r in rows]

    async def awards(self, schema: str) -> dict[tuple[str, str], AwardRow]:
        """The award entries of ``schema`` by their event ``(source, event_id)``."""
        rows = await self._conn.fetch(
            f"SELECT t.source, t.event_id, t.rider_id, t.category, t.available_delta, t.reason, t.rule_id,"
            f" t.rule_version, l.lapses_on FROM {schema}.ledger_transaction t"
            f" LEFT JOIN {schema}.ledger_lot l ON l.lot_id = t.tx_id WHERE t.kind = 'award'"
        )
        return {
            (r["source"], r["event_id"]): AwardRow(
                r["rider_id"],
                r["category"],
                r["available_delta"],
                r["reason"],
                r["rule_id"],
                r["rule_version"],
                r["lapses_on"],
            )
            for r in rows
        }

    @property
    def schema(self) -> str:
        return self._schema


@dataclass(frozen=True, slots=True)
class AwardRow:
    rider_id: str
    category: str | None
    points: int
    reason: str
    rule_id: str | None
    rule_version: int | None
    lapses_on: date | None = None  # the award's lot's last good day (none: its points never lapse)
