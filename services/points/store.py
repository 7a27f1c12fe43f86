"""SQL of the points service: rider counters (for caps and once-only limits) and rule versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.platform.locks import lock
from services.points.domain.hazards import EarlierReport, HazardSearch
from services.points.domain.rules import Rules
from services.points.domain.scoring import CounterKey  # (rider_id, counter)


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
