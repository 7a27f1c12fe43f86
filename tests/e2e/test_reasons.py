"""Every point explained in the reader's language, end to end: for every category a Chinese reader reads
Chinese and an English reader English, with the same code and values; the list of codes; problems in
the reader's language; the points-ledger events carry the codes. (An entry recorded before the codes:
tests/integration/test_privileges.py, in a database of its own.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from libs.i18n.reasons import BY_CODE, CODES
from libs.platform.auth import Role
from libs.platform.kafka import client_options
from tests.e2e.conftest import Api, eventually, shift
from tests.e2e.test_categories import EVERY_CATEGORY, event, hazard

pytestmark = pytest.mark.e2e
CHINESE = re.compile(r"[\u4e00-\u9fff]")
ZH, EN = {"accept-language": "zh-CN,zh;q=0.9"}, {"accept-language": "en-US,en;q=0.9"}


async def _entries(api: Api, rider: str, language: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.http.get(
        f"{api.points_url}/v1/riders/{rider}/entries?limit=500", headers={**api.token(Role.RIDER, rider), **language}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-language"] == ("zh-CN" if language is ZH else "en")
    assert "accept-language" in r.headers["vary"].lower()
    return list(r.json()["items"])


def _words_besides_values(text: str, params: dict[str, Any]) -> str:
    for value in sorted((str(v) for v in params.values() if isinstance(v, str)), key=len, reverse=True):
        text = text.replace(value, "")
    return text


async def test_every_category_reads_in_chinese_for_a_chinese_reader_and_in_english_otherwise(
    api: Api, rider: str
) -> None:
    events = [event(rider, t, d) for t, d, _ in EVERY_CATEGORY]
    events += [hazard(rider, 31.2 + uuid.uuid4().int % 10_000 / 10_000, 121.4), shift(rider, 2.5)]
    for e in events:
        assert (await api.publish(e, source=e["source"])).status_code == 202
    for e in events:
        await api.wait_scored(e["source"], e["id"])

    chinese_entries = await _entries(api, rider, ZH)
    english_entries = await _entries(api, rider, EN)
    plain_entries = await _entries(api, rider, {})
    assert len(chinese_entries) == len(events)
    for zh, en, none in zip(chinese_entries, english_entries, plain_entries, strict=True):
        assert (zh["reason_code"], zh["reason_params"]) == (en["reason_code"], en["reason_params"])
        assert none == en  # no header: English, as before the codes
        assert zh["reason_code"] in BY_CODE
        assert CHINESE.search(zh["reason"]), zh
        assert not re.search(r"[A-Za-z]{3,}", _words_besides_values(zh["reason"], zh["reason_params"])), zh
        assert not CHINESE.search(_words_besides_values(en["reason"], en["reason_params"])), en
    reasons = {e["category"]: e["reason"] for e in chinese_entries}
    assert reasons["volunteer_service"] == "志愿服务 2.5 小时，按整半小时计 5 个 × 5 分 = 25 分"
    assert reasons["honors"] == "获区级荣誉 最美小哥-2024，计 300 分"
    assert reasons["safe_riding"] in {
        "完成安全培训，计 10 分",
        "通过安全知识测试 q-7，计 5 分",
        "2024年6月无交通违法，计 20 分",
    }

    status = await api.http.get(
        f"{api.points_url}/v1/events/volunteer-platform/{events[-1]['id']}",
        headers={**api.token(Role.RIDER, rider), **ZH},
    )
    assert status.json()["reason"] == reasons["volunteer_service"]
    assert status.json()["reason_code"] == "award.volunteer_service"
    assert status.json()["reason_params"] == {"hours": "2.5", "units": 5, "per_unit": 5, "points": 25}


async def test_a_cap_reads_as_the_programme_writes_it(api: Api, rider: str) -> None:
    shifts = [shift(rider, 3), shift(rider, 2)]  # 30 of the day's 40, then 20 asked for and 10 left
    await api.publish(shifts, batch=True)
    for s in shifts:
        await api.wait_scored("volunteer-platform", s["id"])
    clipped = next(e for e in await _entries(api, rider, ZH) if e["event_id"] == shifts[1]["id"])
    assert clipped["reason"] == "今日志愿服务已达上限 40 分，本次获得 10 分（应得 20 分）"
    assert clipped["reason_code"] == "award.cap_clipped"


async def test_the_reason_codes_are_listed_with_both_templates(api: Api, rider: str) -> None:
    r = await api.http.get(f"{api.points_url}/v1/reason-codes", headers=api.token(Role.RIDER, rider))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["code"] for i in items] == [c.code for c in CODES]
    clipped = next(i for i in items if i["code"] == "award.cap_clipped")
    assert clipped["templates"]["zh"] == ["{period}{category}已达上限 {cap} 分，本次获得 {points} 分（应得 {base} 分）"]
    assert {p["name"] for p in clipped["params"]} == {"period", "cap", "category", "points", "base"}
    category = next(p for p in clipped["params"] if p["name"] == "category")
    assert category["vocabulary"]["volunteer_service"] == {"zh": "志愿服务", "en": "volunteer service"}
    page = await api.http.get(f"{api.points_url}/v1/reason-codes?limit=5", headers=api.token(Role.RIDER, rider))
    rest = await api.http.get(
        f"{api.points_url}/v1/reason-codes?limit=500&cursor={page.json()['next_cursor']}",
        headers=api.token(Role.RIDER, rider),
    )
    assert [i["code"] for i in page.json()["items"] + rest.json()["items"]] == [c.code for c in CODES]
    assert rest.json()["next_cursor"] is None
    assert (await api.http.get(f"{api.points_url}/v1/reason-codes")).status_code == 401


async def test_problems_riders_meet_are_in_their_language_and_keep_their_type(api: Api, rider: str) -> None:
    other = f"{rider}-other"
    url = f"{api.points_url}/v1/riders/{other}/balance"
    zh = await api.http.get(url, headers={**api.token(Role.RIDER, rider), **ZH})
    en = await api.http.get(url, headers=api.token(Role.RIDER, rider))
    assert zh.status_code == en.status_code == 403
    assert zh.json()["type"] == en.json()["type"] == "https://warmbee.dev/problems/forbidden"
    assert (zh.json()["title"], zh.json()["detail"]) == ("不是您的账户", "骑手只能查看自己的积分和明细")
    assert (en.json()["title"], en.json()["detail"]) == (
        "Not your account",
        "a rider reads only its own balance and history",
    )
    assert zh.headers["content-language"] == "zh-CN"
    anonymous = await api.http.get(url, headers=ZH)
    assert anonymous.status_code == 401
    assert anonymous.json()["title"] == "需要登录"

    reserve = await api.http.post(
        f"{api.redemption_url}/v1/redemptions",
        json={"reward_id": f"no-such-{uuid.uuid4().hex[:6]}"},
        headers={**api.token(Role.RIDER, rider), **ZH, "idempotency-key": uuid.uuid4().hex},
    )
    assert reserve.status_code == 404
    assert reserve.json()["type"] == "https://warmbee.dev/problems/reward-unknown"
    assert reserve.json()["title"] == "奖励不存在"
    assert reserve.json()["detail"].startswith("reward_id：没有奖励")


async def test_an_operators_two_character_reason_is_a_reason_and_stays_the_operators_words(
    api: Api, rider: str
) -> None:
    async def adjust(reason: str, language: dict[str, str]) -> Any:
        return await api.http.post(
            f"{api.points_url}/v1/adjustments",
            json={"rider_id": rider, "amount": 5, "reason": reason},
            headers={**api.token_for_operator(), **language, "idempotency-key": uuid.uuid4().hex},
        )

    made = await adjust("补发", ZH)
    assert made.status_code == 201, made.text
    assert (made.json()["reason"], made.json()["reason_code"]) == ("补发", "adjustment")
    assert (await _entries(api, rider, EN))[0]["reason"] == "补发"
    for empty in ("...", "   ", "——"):
        refused = await adjust(empty, EN)
        assert refused.status_code == 422, empty
        assert "reason" in refused.json()["detail"]


async def test_the_points_ledger_events_carry_the_code_and_its_values(api: Api, rider: str) -> None:
    consumer = AIOKafkaConsumer(
        api.settings.topic_points_ledger, auto_offset_reset="earliest", **client_options(api.settings)
    )
    await consumer.start()
    try:
        e = shift(rider, 1)
        await api.publish(e)
        await api.wait_scored("volunteer-platform", e["id"])

        async def found() -> dict[str, Any] | None:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    body = orjson.loads(record.value or b"{}")
                    if body.get("subject") == rider and body["data"].get("event_id") == e["id"]:
                        return dict(body["data"])
            return None

        data = await eventually(found, 30, "the award on points-ledger")
    finally:
        await consumer.stop()
    assert data["reason_code"] == "award.volunteer_service"
    assert data["reason_params"] == {"hours": "1", "units": 2, "per_unit": 5, "points": 10}
    assert data["reason"] == "1 verified hours = 2 whole half-hours × 5 points = 10 points"
