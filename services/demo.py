"""A small realistic demo against a running stack: a few riders and volunteer shifts over HTTP and
Kafka, one duplicate, one invalid event over each path, then what the riders see."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from libs.platform.auth import Role, mint_token
from libs.platform.kafka import make_producer
from libs.platform.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
VOLUNTEER = "volunteer-platform"
CENTRE = "community-centre-r29"
GRID = "grid-office"


def _event(source: str, event_id: str, rider: str, at: datetime, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
        "subject": rider,
        "time": at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def demo_events(day: datetime) -> dict[str, Any]:
    """Events of one day (yesterday, Asia/Shanghai); ids carry the date so a rerun is a duplicate."""
    tag = day.strftime("%Y%m%d")

    def at(hour: int, minute: int = 0) -> datetime:
        return day.replace(hour=hour, minute=minute, second=0, microsecond=0)

    def shift(n: int, rider: str, hour: int, hours: float) -> dict[str, Any]:
        return _event(
            VOLUNTEER,
            f"demo-{tag}-shift-{n}",
            rider,
            at(hour),
            "volunteer.shift.completed",
            {"shift_id": f"shift-{tag}-{n}", "hours": hours},
        )

    return {
        "http_batch": [
            shift(1, "rider-1001", 9, 3.0),  # 30 points
            shift(2, "rider-1001", 14, 2.0),  # 20 earned, 10 awarded: daily cap of 40
            shift(3, "rider-1002", 10, 1.75),  # 3 whole half-hours: 15 points
            shift(4, "rider-1003", 18, 0.4),  # less than a half-hour: 0 points, with the reason
            _event(
                CENTRE,
                f"demo-{tag}-civic-1",
                "rider-1002",
                at(11),
                "civic.action.verified",
                {"action": "litter_pickup"},
            ),  # 随手清 litter pick-up: 5 points
        ],
        "hazards": [  # two reports of one hazard: the first scored is paid in full, the later one earns 1
            _event(
                GRID,
                f"demo-{tag}-hazard-{n}",
                rider,
                at(12, n),
                "hazard.report.verified",
                {
                    "report_id": f"hz-{tag}-{n}",
                    "severity": "medium",
                    "lat": 31.2304 + n / 100_000,
                    "lon": 121.4737,
                    "reported_at": at(11, 30 + n).isoformat(),
                },
            )
            for n, rider in ((1, "rider-1002"), (2, "rider-1003"))
        ],
        "duplicate": shift(1, "rider-1001", 9, 3.0),
        "invalid": shift(9, "rider-1002", 16, -1),
        "kafka": shift(5, "rider-1003", 8, 2.0),  # 20 points, published straight to Kafka
        "kafka_poison": b'{"specversion": "1.0", "id": "broken", ',
    }


@dataclass
class DemoReport:
    lines: list[str]
    rider_token: str


async def run_demo(settings: Settings) -> DemoReport:
    yesterday = datetime.now(SHANGHAI) - timedelta(days=1)
    ev = demo_events(yesterday)
    events_url = f"http://{settings.host}:{settings.events_port}"
    points_url = f"http://{settings.host}:{settings.points_port}"
    lines: list[str] = []
    volunteer = mint_token(settings, Role.SOURCE, VOLUNTEER)
    operator = mint_token(settings, Role.OPERATOR, "ops-demo")
    rider_token = mint_token(settings, Role.RIDER, "rider-1001")
    async with httpx.AsyncClient(timeout=10) as http:
        batch_type = {"content-type": "application/cloudevents-batch+json"}
        single_type = {"content-type": "application/cloudevents+json"}
        by_source: dict[str, list[dict[str, Any]]] = {}
        for e in [*ev["http_batch"], *ev["hazards"]]:
            by_source.setdefault(e["source"], []).append(e)
        for source, events in by_source.items():
            token = mint_token(settings, Role.SOURCE, source)
            r = await http.post(
                f"{events_url}/v1/events",
                content=orjson.dumps(events),
                headers={**batch_type, "authorization": f"Bearer {token}"},
            )
            count = f"{len(events)} event{'s' if len(events) > 1 else ''}"
            lines.append(f"POST /v1/events ({count} from {source}) -> {r.status_code} {r.text}")
        for label in ("duplicate", "invalid"):
            r = await http.post(
                f"{events_url}/v1/events",
                content=orjson.dumps(ev[label]),
                headers={**single_type, "authorization": f"Bearer {volunteer}"},
            )
            lines.append(f"POST /v1/events ({label}) -> {r.status_code} {r.text}")
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic_activity_events, orjson.dumps(ev["kafka"]), key=ev["kafka"]["subject"].encode()
            )
            await producer.send_and_wait(settings.topic_activity_events, ev["kafka_poison"], key=b"rider-1003")
        finally:
            await producer.stop()
        lines.append(f"Kafka {settings.topic_activity_events}: 1 valid event and 1 that is not JSON")
        watched = [*ev["http_batch"], *ev["hazards"], ev["kafka"]]
        await _wait_scored(http, points_url, operator, watched)
        for rider in ("rider-1001", "rider-1002", "rider-1003"):
            r = await http.get(
                f"{points_url}/v1/riders/{rider}/balance", headers={"authorization": f"Bearer {operator}"}
            )
            b = r.json()
            lines.append(f"{rider}: available {b['available']}, earned {b['earned_total']}")
        for e in [ev["http_batch"][4], *ev["hazards"]]:
            r = await http.get(
                f"{points_url}/v1/events/{e['source']}/{e['id']}", headers={"authorization": f"Bearer {operator}"}
            )
            points = r.json()["points"]
            lines.append(
                f"{e['subject']}, {e['type']}: {points} point{'' if points == 1 else 's'} ({r.json()['reason']})"
            )
        r = await http.get(f"{events_url}/v1/dead-letters?limit=1", headers={"authorization": f"Bearer {operator}"})
        items = r.json().get("items", [])
        if items:
            lines.append(f"dead letter: {items[0]['reason']}")
        lines += await _redeem(http, settings, operator, rider_token, tag=yesterday.strftime("%Y%m%d"))
        lines += await _history_in_chinese(http, points_url, rider_token, "rider-1001")
    return DemoReport(lines, rider_token)


async def _history_in_chinese(http: httpx.AsyncClient, points_url: str, token: str, rider: str) -> list[str]:
    """The rider's history as the rider's page asks for it: in Chinese, with the code of every reason."""
    r = await http.get(
        f"{points_url}/v1/riders/{rider}/entries",
        headers={"authorization": f"Bearer {token}", "accept-language": "zh-CN"},
    )
    lines = [f"{rider}'s history (Accept-Language: zh-CN):"]
    for e in r.json()["items"]:
        lines.append(f"  {e['amount']:>+4}  {e['reason']}  [{e['reason_code']}]")
    return lines


PARTNERS = [
    {"partner_id": "laowang-noodles", "name": "老王面馆 Lao Wang Noodles", "kind": "merchant"},
    {"partner_id": "chenglong-clinic", "name": "成龙路社区医院 Community Hospital", "kind": "hospital"},
    {"partner_id": "quickcut-r29", "name": "快剪 QuickCut", "kind": "barber"},
]
REWARDS = [
    {
        "reward_id": "meal-set",
        "partner_id": "laowang-noodles",
        "title": "午餐套餐 lunch set",
        "cost": 30,
        "active": True,
    },
    {
        "reward_id": "eye-exam",
        "partner_id": "chenglong-clinic",
        "title": "眼科检查 eye examination",
        "cost": 60,
        "stock_per_month": 20,
        "active": True,
    },
    {
        "reward_id": "off-peak-haircut",
        "partner_id": "quickcut-r29",
        "title": "错峰快剪 off-peak haircut",
        "cost": 25,
        "per_rider_monthly_limit": 2,
        "active": True,
    },
]


async def _redeem(http: httpx.AsyncClient, settings: Settings, operator: str, rider_token: str, tag: str) -> list[str]:
    """Seed the partners and rewards, then rider-1001 redeems a lunch set and the noodle shop confirms."""
    url = f"http://{settings.host}:{settings.redemption_port}"
    as_operator = {"authorization": f"Bearer {operator}"}
    for partner in PARTNERS:
        (await http.post(f"{url}/v1/partners", json=partner, headers=as_operator)).raise_for_status()
    for reward in REWARDS:
        (await http.post(f"{url}/v1/rewards", json=reward, headers=as_operator)).raise_for_status()
    catalogue = (await http.get(f"{url}/v1/rewards", headers={"authorization": f"Bearer {rider_token}"})).json()
    lines = ["catalogue: " + "; ".join(f"{i['title']} ({i['kind']}) {i['cost']} pts" for i in catalogue["items"])]
    r = await http.post(
        f"{url}/v1/redemptions",
        json={"reward_id": "meal-set"},
        headers={"authorization": f"Bearer {rider_token}", "idempotency-key": f"demo-{tag}"},
    )
    lines.append(f"rider-1001 reserves the lunch set -> {r.status_code} {r.text}")
    if r.status_code == 201 and r.json()["status"] == "held":
        noodle_shop = mint_token(settings, Role.PARTNER, "laowang-noodles")
        c = await http.post(
            f"{url}/v1/partner/confirmations",
            json={"code": r.json()["code"]},
            headers={"authorization": f"Bearer {noodle_shop}"},
        )
        lines.append(f"the noodle shop confirms code {r.json()['code']} -> {c.status_code} status {c.json()['status']}")
    points = f"http://{settings.host}:{settings.points_port}"
    b = (await http.get(f"{points}/v1/riders/rider-1001/balance", headers=as_operator)).json()
    lines.append(f"rider-1001 now: available {b['available']}, held {b['held']}, redeemed {b['redeemed_total']}")
    return lines


async def _wait_scored(
    http: httpx.AsyncClient,
    points_url: str,
    token: str,
    events: list[dict[str, Any]],
    timeout_s: float = 30.0,
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    for e in events:
        while True:
            r = await http.get(
                f"{points_url}/v1/events/{e['source']}/{e['id']}",
                headers={"authorization": f"Bearer {token}"},
            )
            if r.status_code == 200 and r.json()["status"] == "scored":
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"event {e['id']} not scored within {timeout_s}s: {r.text}")
            await asyncio.sleep(0.2)
