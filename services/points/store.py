"""SQL of the points service: rider counters (for caps and once-only limits) and rule versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from services.points.domain.rules import Rules

CounterKey = tuple[str, str]  # (rider_id, counter)


class PointsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock_riders(self, rider_ids: Iterable[str]) -> None:
        """Serialise scoring per rider for this transaction, in a fixed order so workers never deadlock."""
        riders = sorted(set(rider_ids))
        if riders:
            await self._conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(r, 42))"
                " FROM (SELECT unnest($1::text[]) AS r ORDER BY 1) AS sorted_riders",
                riders,
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


def counter_keys(rider_id: str, counters: Sequence[str]) -> list[CounterKey]:
    return [(rider_id, c) for c in counters]
