"""The operators' reads the console uses (API.md, "Operators"), on the real stack: every partner, the
catalogue with its inactive rewards, riders found by the start of their id with their balances."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.platform.auth import Role
from tests.e2e.conftest import Api, shift
from tests.e2e.test_redemption import catalogue_entry, grant

pytestmark = pytest.mark.e2e


async def test_riders_are_found_by_the_start_of_their_id_a_page_at_a_time(api: Api) -> None:
    tag = f"ops-find-{uuid.uuid4().hex[:6]}"
    for n, points in enumerate((30, 10, 20)):
        await grant(api, f"{tag}-{n}", points)
    await grant(api, f"other-{tag}", 5)

    first = await api.http.get(
        f"{api.points_url}/v1/riders", params={"prefix": tag, "limit": 2}, headers=api.token_for_operator()
    )
    assert first.status_code == 200, first.text
    page = first.json()
    assert [(r["rider_id"], r["available"]) for r in page["items"]] == [(f"{tag}-0", 30), (f"{tag}-1", 10)]
    rest = await api.http.get(
        f"{api.points_url}/v1/riders",
        params={"prefix": tag, "limit": 2, "cursor": page["next_cursor"]},
        headers=api.token_for_operator(),
    )
    assert [r["rider_id"] for r in rest.json()["items"]] == [f"{tag}-2"]
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prefix": "a b"}, "prefix"),
        ({"prefix": "x" * 65}, "prefix"),
        ({"cursor": "../x"}, "cursor"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_a_bad_prefix_cursor_or_limit_is_refused_naming_it(
    api: Api, params: dict[str, str | int], field: str
) -> None:
    r = await api.http.get(f"{api.points_url}/v1/riders", params=params, headers=api.token_for_operator())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in r.text


async def test_a_wildcard_in_a_prefix_matches_only_itself(api: Api) -> None:
    tag = f"ops_{uuid.uuid4().hex[:6]}"
    await grant(api, f"{tag}-1", 5)
    await grant(api, f"{tag.replace('_', 'X')}-1", 5)  # LIKE's "_" would match this one
    r = await api.http.get(f"{api.points_url}/v1/riders", params={"prefix": tag}, headers=api.token_for_operator())
    assert [x["rider_id"] for x in r.json()["items"]] == [f"{tag}-1"]


async def test_every_partner_is_listed_with_its_rewards_counted_and_inactive_rewards_shown_to_operators(
    api: Api,
) -> None:
    partner_id, reward_id = await catalogue_entry(api, cost=30)
    retired = await api.http.put(
        f"{api.redemption_url}/v1/rewards/{reward_id}",
        headers=api.token_for_operator(),
        json={"reward_id": reward_id, "partner_id": partner_id, "title": "午餐套餐", "cost": 30, "active": False},
    )
    assert retired.status_code == 200, retired.text

    listed = await api.http.get(f"{api.redemption_url}/v1/partners", headers=api.token_for_operator())
    (partner,) = [p for p in listed.json()["items"] if p["partner_id"] == partner_id]
    assert (partner["name"], partner["kind"], partner["rewards"], partner["active_rewards"]) == (
        "老王面馆",
        "merchant",
        1,
        0,
    )

    public = await api.http.get(f"{api.redemption_url}/v1/rewards", headers=api.token_for_operator())
    assert reward_id not in {r["reward_id"] for r in public.json()["items"]}
    everything = await api.http.get(
        f"{api.redemption_url}/v1/rewards", params={"include_inactive": "true"}, headers=api.token_for_operator()
    )
    (found,) = [r for r in everything.json()["items"] if r["reward_id"] == reward_id]
    assert found["active"] is False


async def test_an_operator_reads_a_riders_redemptions_by_naming_the_rider(api: Api, rider: str) -> None:
    _, reward = await catalogue_entry(api, cost=10)
    await grant(api, rider, 10)
    held = await api.http.post(
        f"{api.redemption_url}/v1/redemptions",
        headers={**api.token(Role.RIDER, rider), "idempotency-key": uuid.uuid4().hex},
        json={"reward_id": reward},
    )
    assert held.status_code == 201, held.text
    r = await api.http.get(
        f"{api.redemption_url}/v1/redemptions", params={"rider_id": rider}, headers=api.token_for_operator()
    )
    assert r.status_code == 200, r.text
    assert [x["redemption_id"] for x in r.json()["items"]] == [held.json()["redemption_id"]]
    bad = await api.http.get(
        f"{api.redemption_url}/v1/redemptions", params={"rider_id": "a/b"}, headers=api.token_for_operator()
    )
    assert bad.status_code == 422
    assert "rider_id" in bad.json()["detail"]


async def test_the_scoring_status_shows_the_newest_award_and_what_waits(api: Api, rider: str) -> None:
    event = shift(rider, 1, time=datetime.now(UTC).isoformat())
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", str(event["id"]))
    r = await api.http.get(f"{api.points_url}/v1/scoring", headers=api.token_for_operator())
    assert r.status_code == 200, r.text
    status = r.json()
    assert datetime.now(UTC) - datetime.fromisoformat(status["last_scored_at"]) < timedelta(minutes=2)
    assert status["waiting_capped"] is False
