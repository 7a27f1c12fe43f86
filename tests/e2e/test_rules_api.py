"""The rules over HTTP, as the operator console uses them: check a file (every problem with its line),
what-if over stored events, publish, and every published version; the same refusals as the CLI.

A version published here is a copy of the document in force under a rules id of its own, effective a
few seconds ahead (the stack's WARMBEE_RULES_MIN_LEAD_S is 4): it scores every later event exactly as
before, so other tests of the shared stack are unaffected, whatever order they run in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml

from libs.platform.auth import Role
from services.points.rules_files import DEFAULT_RULES_FILE
from tests.e2e.conftest import Api, shift

pytestmark = pytest.mark.e2e

YAML = {"content-type": "application/yaml"}
DEFAULT = DEFAULT_RULES_FILE.read_text(encoding="utf-8")


def document(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = yaml.safe_load(DEFAULT)
    return d | changes


def as_yaml(d: dict[str, Any]) -> bytes:
    return yaml.safe_dump(d, allow_unicode=True, sort_keys=False).encode()


async def post(api: Api, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return await api.http.post(
        f"{api.points_url}{path}", content=body, headers={**api.token_for_operator(), **YAML, **(headers or {})}
    )


async def test_a_valid_file_is_summarised(api: Api) -> None:
    r = await post(api, "/v1/rules/check", DEFAULT.encode())

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rules_id"], body["version"], body["timezone"]) == ("warmbee-default", 1, "Asia/Shanghai")
    assert body["effective_from"] == "2024-01-01T00:00:00+08:00"
    assert len(body["categories"]) == 8
    assert body["categories"]["volunteer_service"]["points_per_hour"] == 10


async def test_an_invalid_file_lists_every_problem_with_its_line_and_path(api: Api) -> None:
    text = DEFAULT.replace("points_per_hour: 10", "points_per_hour: 0").replace("version: 1", "version: one")

    r = await post(api, "/v1/rules/check", text.encode())

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "https://warmbee.dev/problems/invalid-rules"
    lines = text.splitlines()
    located = {e["path"]: (e["line"], e["column"]) for e in problem["errors"]}
    assert set(located) == {"version", "categories.volunteer_service.points_per_hour"}
    line, column = located["categories.volunteer_service.points_per_hour"]
    assert lines[line - 1][column - 1 :].startswith("0")
    assert lines[located["version"][0] - 1] == "version: one"
    assert problem["detail"].startswith("2 problem(s): line ")


async def test_problems_are_in_chinese_when_asked(api: Api) -> None:
    r = await post(api, "/v1/rules/check", b"- not\n- a mapping\n", {"accept-language": "zh-CN"})

    assert r.status_code == 422
    assert r.json()["title"] == "规则文件无效"
    assert r.json()["errors"][0]["message"].endswith("got a list")


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        (b"rules_id: x\nversion: [1\n", (3, 1), "is not valid YAML"),
        (b"a: &a [1, 2]\nb: [*a, *a]\n", (2, 5), "the alias *a is not allowed"),
        (b"rules_id: x\ndescription: a\x00b\n", (2, 1), "a NUL character is not allowed"),
        (b"rules_id: x\nversion: \xff\n", (2, 1), "is not UTF-8"),
    ],
)
async def test_text_that_is_not_a_rules_file_is_a_422_with_its_line(
    api: Api, body: bytes, where: tuple[int, int], says: str
) -> None:
    for path in ("/v1/rules/check", "/v1/rules/versions", "/v1/rules/what-if?from=2024-05-01&to=2024-05-02"):
        r = await post(api, path, body)

        assert r.status_code == 422, (path, r.text)
        (error,) = r.json()["errors"]
        assert ((error["line"], error["column"]), error["path"]) == (where, ""), path
        assert says in error["message"]


async def test_a_year_9999_effective_date_is_refused_naming_the_field(api: Api) -> None:
    d = document(effective_from="9999-12-31T23:59:59-12:00")

    r = await post(api, "/v1/rules/versions", as_yaml(d))

    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == ["effective_from"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
async def test_a_body_that_is_not_yaml_by_its_type_is_415(api: Api, content_type: str) -> None:
    r = await post(api, "/v1/rules/check", DEFAULT.encode(), {"content-type": content_type})

    assert r.status_code == 415, r.text
    assert "send the rules file as application/yaml" in r.json()["detail"]


async def test_text_yaml_and_x_yaml_are_yaml_too(api: Api) -> None:
    for media in ("text/yaml", "application/x-yaml", "application/yaml; charset=utf-8"):
        assert (await post(api, "/v1/rules/check", DEFAULT.encode(), {"content-type": media})).status_code == 200


async def test_a_1_mib_file_is_refused_with_413_before_it_is_read(api: Api) -> None:
    body = DEFAULT.encode() + b"# " + b"x" * (1024 * 1024) + b"\n"

    r = await post(api, "/v1/rules/check", body)

    assert r.status_code == 413, r.text
    assert r.json()["type"] == "https://warmbee.dev/problems/body-too-large"


async def test_what_if_shows_per_category_and_per_rider_differences(api: Api, rider: str) -> None:
    day = "2025-03-11"  # a day of this test's own: the report covers every event of its period
    event = shift(rider, 2, time=f"{day}T10:00:00+08:00")
    assert (await api.publish(event)).status_code == 202
    await api.wait_scored("volunteer-platform", str(event["id"]))
    candidate = document()
    candidate["categories"]["volunteer_service"]["points_per_hour"] = 20  # 20 -> 40 points for two hours

    r = await post(api, f"/v1/rules/what-if?from={day}&to=2025-03-12&top=1000", as_yaml(candidate))

    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["from"], report["to"], report["rules_id"]) == (day, "2025-03-12", "warmbee-default")
    volunteer = next(c for c in report["categories"] if c["category"] == "volunteer_service")
    assert volunteer["candidate"] - volunteer["current"] == volunteer["change"] >= 20
    assert report["change"] == sum(c["change"] for c in report["categories"])
    mine = next(x for x in report["riders"] if x["rider_id"] == rider)
    assert mine == {"rider_id": rider, "current": 20, "candidate": 40, "change": 20}
    assert report["riders_changed"] >= 1
    changes = [abs(x["change"]) for x in report["riders"]]
    assert changes == sorted(changes, reverse=True)
    assert (await api.balance(rider))["available"] == 20  # nothing written


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("from=2025-01-01&to=2025-12-31", "at most 93 are scored at once"),
        ("from=2025-03-12&to=2025-03-11", "is not after from"),
        ("from=2025-03-12&to=10000-01-01", "to"),
        ("from=2025-03-12", "to"),
    ],
)
async def test_what_if_refuses_a_period_it_cannot_score(api: Api, query: str, says: str) -> None:
    r = await post(api, f"/v1/rules/what-if?{query}", DEFAULT.encode())

    assert r.status_code == 422, r.text
    assert says in r.json()["detail"]


async def test_what_if_at_the_end_of_the_calendar_scores_nothing(api: Api) -> None:
    r = await post(api, "/v1/rules/what-if?from=9999-12-01&to=9999-12-31", DEFAULT.encode())

    assert r.status_code == 200, r.text
    assert (r.json()["events"], r.json()["riders"]) == (0, [])


async def test_publish_then_versions_shows_it_and_rules_shows_it_once_in_force(api: Api) -> None:
    ops = api.token_for_operator()
    in_force = (await api.http.get(f"{api.points_url}/v1/rules", headers=ops)).json()
    rules_id = f"rules-api-{uuid.uuid4().hex[:8]}"
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    candidate = document(rules_id=rules_id, version=1, effective_from=effective.isoformat())
    candidate["categories"] = in_force["categories"]  # scores as before: other tests see no change

    published = await post(api, "/v1/rules/versions", as_yaml(candidate))
    again = await post(api, "/v1/rules/versions", as_yaml(candidate))
    changed = await post(
        api, "/v1/rules/versions", as_yaml(candidate | {"description": "another document, the same version"})
    )

    assert published.status_code == 201, published.text
    stored = published.json()
    assert (stored["rules_id"], stored["version"], stored["published_by"]) == (rules_id, 1, "ops-test")
    assert datetime.fromisoformat(stored["effective_from"]) == effective
    assert yaml.safe_load(stored["yaml"]) == stored["document"]
    assert again.status_code == 200, again.text
    assert again.json() == stored
    assert changed.status_code == 409, changed.text
    assert changed.json()["type"] == "https://warmbee.dev/problems/rules-version-published"
    assert "version: 1 is not after the stored version 1; use 2" in changed.json()["problems"]
    versions = (await api.http.get(f"{api.points_url}/v1/rules/versions", headers=ops)).json()["items"]
    assert [v for v in versions if v["rules_id"] == rules_id] == [stored]
    assert any(v["rules_id"] == "warmbee-default" and v["version"] == 1 for v in versions)
    assert [v["effective_from"] for v in versions] == sorted(v["effective_from"] for v in versions)

    await asyncio.sleep(max((effective - datetime.now(UTC)).total_seconds(), 0) + 0.5)
    now = (await api.http.get(f"{api.points_url}/v1/rules", headers=ops)).json()
    assert (now["rules_id"], now["version"]) == (rules_id, 1)


async def test_a_version_too_soon_or_not_after_the_latest_is_refused_with_every_reason(api: Api) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    candidate = document(rules_id=f"rules-api-{uuid.uuid4().hex[:8]}", effective_from=soon.isoformat())

    r = await post(api, "/v1/rules/versions", as_yaml(candidate))

    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"] == "https://warmbee.dev/problems/rules-refused"
    assert any("is not in the future by more than 4 s" in p for p in problem["problems"])
    assert [e["path"] for e in problem["errors"]] == ["effective_from"]  # as the console lists an invalid file's
    past = await post(api, "/v1/rules/versions", DEFAULT.replace("version: 1", "version: 99999").encode())
    assert past.status_code == 422, past.text
    assert any("is not after the latest stored version's" in p for p in past.json()["problems"])


async def test_only_an_operator_uses_the_rules_routes(api: Api) -> None:
    for role in (Role.RIDER, Role.PARTNER, Role.SOURCE):
        h = {**api.token(role, "someone"), **YAML}
        assert (await api.http.get(f"{api.points_url}/v1/rules/versions", headers=h)).status_code == 403
        for path in ("/v1/rules/check", "/v1/rules/versions", "/v1/rules/what-if?from=2025-03-11&to=2025-03-12"):
            r = await api.http.post(f"{api.points_url}{path}", content=DEFAULT.encode(), headers=h)
            assert r.status_code == 403, (role, path, r.text)
    r = await api.http.post(f"{api.points_url}/v1/rules/check", content=DEFAULT.encode(), headers=YAML)
    assert r.status_code == 401


async def test_openapi_documents_the_yaml_request_body(api: Api) -> None:
    paths = (await api.http.get(f"{api.points_url}/openapi.json")).json()["paths"]

    for path in ("/v1/rules/check", "/v1/rules/versions", "/v1/rules/what-if"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/yaml", "application/x-yaml", "text/yaml"}, path
    assert "get" in paths["/v1/rules/versions"]
