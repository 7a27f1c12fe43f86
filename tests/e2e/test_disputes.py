"""Disputes (申诉) end to end through the HTTP API of the real stack: a rider questions a shift scored 0,
an operator upholds it with an adjustment, the rider sees the reply, the points and a notice; every
refusal of the issue changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from libs.platform.auth import Role
from tests.e2e.conftest import Api, shift
from tests.e2e.test_notices import notice_of


def new_rider() -> str:
    return f"rider-dsp-{uuid.uuid4().hex[:10]}"


async def open_dispute(api: Api, rider: str, entry_id: Any, message: Any, key: str | None = None) -> httpx.Response:
    return await api.http.post(
        f"{api.points_url}/v1/disputes",
        json={"entry_id": entry_id, "message": message},
        headers={**api.token(Role.RIDER, rider), "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def resolve(api: Api, dispute_id: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return await api.http.post(
        f"{api.points_url}/v1/disputes/{dispute_id}/resolve",
        json=body,
        headers={**api.token_for_operator(), "Idempotency-Key": key or uuid.uuid4().hex, "Accept-Language": "zh"},
    )


async def disputes(api: Api, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    r = await api.http.get(f"{api.points_url}/v1/disputes?limit=500{query}", headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def scored_entry(api: Api, rider: str, hours: float) -> dict[str, Any]:
    event = shift(rider, hours)
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", event["id"])
    return next(e for e in await api.entries(rider) if e["event_id"] == event["id"])


async def test_a_rider_disputes_a_shift_an_operator_upholds_it_and_the_rider_sees_reply_points_and_notice(
    api: Api,
) -> None:
    rider = new_rider()
    entry = await scored_entry(api, rider, 0.25)  # a quarter of an hour recorded: 0 points
    assert entry["amount"] == 0
    opened = await open_dispute(api, rider, entry["entry_id"], "我做了三个小时，组织方只记了一刻钟", key="open-1")
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert dispute["status"] == "open"
    assert dispute["rider_id"] == rider
    again = await open_dispute(api, rider, entry["entry_id"], "我做了三个小时，组织方只记了一刻钟", key="open-1")
    assert again.status_code == 200
    assert again.json()["dispute_id"] == dispute["dispute_id"]

    waiting = await disputes(api, api.token_for_operator(), "&status=open")
    mine = next(d for d in waiting if d["dispute_id"] == dispute["dispute_id"])
    assert mine["entry"]["event"]["data"]["hours"] == 0.25  # the operator weighs the event itself
    assert [d["created_at"] for d in waiting] == sorted(d["created_at"] for d in waiting)  # oldest first

    upheld = await resolve(
        api, dispute["dispute_id"], {"outcome": "upheld", "amount": 9, "reply": "已核实三小时"}, "r1"
    )
    assert upheld.status_code == 200, upheld.text
    body = upheld.json()
    assert body["status"] == "resolved"
    assert body["outcome"] == "upheld"
    assert body["adjustment_entry_id"]
    retry = await resolve(api, dispute["dispute_id"], {"outcome": "upheld", "amount": 9, "reply": "已核实三小时"}, "r1")
    assert retry.status_code == 200
    assert retry.json() == body
    twice = await resolve(api, dispute["dispute_id"], {"outcome": "rejected", "reply": "再来一次"})
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/dispute-resolved")

    seen = (await disputes(api, api.token(Role.RIDER, rider)))[0]
    assert seen["reply"] == "已核实三小时"
    assert seen["outcome"] == "upheld"
    assert seen["entry"]["event"] is None
    assert (await api.balance(rider))["available"] == 9
    r = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/entries", headers={**api.token(Role.RIDER, rider), "Accept-Language": "zh"}
    )
    adjustment = next(e for e in r.json()["items"] if e["entry_id"] == body["adjustment_entry_id"])
    assert adjustment["reason_code"] == "adjustment.dispute_upheld"
    assert "申诉" in adjustment["reason"]
    assert dispute["dispute_id"] in adjustment["reason"]
    notice = await notice_of(api, rider, "dispute.resolved")
    assert "申诉成立" in notice["text"]
    assert "已核实三小时" in notice["text"]
    assert "upheld" in notice["text_en"]


async def test_every_refusal_changes_nothing(api: Api) -> None:
    rider, other = new_rider(), new_rider()
    entry = await scored_entry(api, rider, 2)
    before = await api.balance(rider)
    for entry_id in (entry["entry_id"], 2**62):  # another rider's entry, and none at all
        r = await open_dispute(api, other, entry_id, "不对")
        assert (r.status_code, r.json()["type"].rsplit("/", 1)[-1]) == (404, "entry-unknown"), r.text
    for message in ("", "   ", "字" * 2000, "换行\n"):
        r = await open_dispute(api, rider, entry["entry_id"], message)
        assert r.status_code == 422, (message[:5], r.text)
    first = (await open_dispute(api, rider, entry["entry_id"], "少了")).json()
    second = await open_dispute(api, rider, entry["entry_id"], "还是少了")
    assert second.status_code == 409
    assert second.json()["type"].endswith("/dispute-open")
    for bad in ({"outcome": "upheld", "reply": "好"}, {"outcome": "upheld", "amount": 0, "reply": "好"}):
        r = await resolve(api, first["dispute_id"], bad)
        assert r.status_code == 422, r.text
    beyond = await resolve(
        api, first["dispute_id"], {"outcome": "upheld", "amount": -(before["available"] + 1), "reply": "收回"}
    )
    assert (beyond.status_code, beyond.json()["type"].rsplit("/", 1)[-1]) == (409, "insufficient-points"), beyond.text
    rider_resolves = await api.http.post(
        f"{api.points_url}/v1/disputes/{first['dispute_id']}/resolve",
        json={"outcome": "rejected", "reply": "我自己处理"},
        headers={**api.token(Role.RIDER, rider), "Idempotency-Key": "x"},
    )
    assert rider_resolves.status_code == 403
    unknown = await resolve(api, "dsp_" + "0" * 32, {"outcome": "rejected", "reply": "无"})
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/dispute-unknown")
    assert await api.balance(rider) == before
    (still,) = await disputes(api, api.token(Role.RIDER, rider))
    assert still["status"] == "open"
    assert still["dispute_id"] == first["dispute_id"]
    assert await disputes(api, api.token(Role.RIDER, other)) == []
    rejected = await resolve(api, first["dispute_id"], {"outcome": "rejected", "reply": "记录无误"})
    assert rejected.status_code == 200
    assert rejected.json()["adjustment_entry_id"] is None
    assert await api.balance(rider) == before
    notice = await notice_of(api, rider, "dispute.resolved")
    assert "未获支持" in notice["text"]
    assert "记录无误" in notice["text"]
