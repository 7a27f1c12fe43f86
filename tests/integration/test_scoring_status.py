"""The console's "is scoring keeping up?" (GET /v1/scoring) against PostgreSQL: an event accepted over
HTTP and not scored yet is counted as waiting, with its time; once a dead letter accounts for it, it
is not (it waits for an operator instead, on the dead letters' count)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.activity.store import ActivityStore, DeadLetterInput
from libs.platform.db import Database
from services.points.queries import PointsQueries
from tests.integration.factories import activity_event, volunteer_shift


async def status(db: Database) -> dict[str, object]:
    async with db.read() as conn:
        return await PointsQueries(conn).scoring_status(3600, 10_000)


async def test_an_event_accepted_over_http_and_not_scored_waits_until_a_dead_letter_accounts_for_it(
    db: Database, rider: str
) -> None:
    before = await status(db)
    event = activity_event(volunteer_shift(rider, 2))
    await db.run(lambda conn: ActivityStore(conn).record([event], "http"))

    waiting = await status(db)
    assert waiting["waiting"] == int(str(before["waiting"])) + 1
    oldest = waiting["oldest_waiting_received_at"]
    assert isinstance(oldest, datetime)
    assert datetime.now(UTC) - oldest < timedelta(minutes=5)

    letter = DeadLetterInput("data.hours: test", None, None, None, None, b"{}", event.source, event.event_id)
    await db.run(lambda conn: ActivityStore(conn).add_dead_letters([letter]))
    assert (await status(db))["waiting"] == before["waiting"]
