"""Rules published mid-stream score old and new events by their own day's rules; replay is exact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from libs.platform.localstack import ROOT, LocalStack
from services.points.rules_files import DEFAULT_RULES_FILE
from tests.e2e.conftest import Api, shift

pytestmark = pytest.mark.e2e


def warmbee(stack: LocalStack, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **stack.settings.as_env()}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def civic(rider: str, at: datetime) -> dict[str, object]:
    return shift(
        rider,
        1,
        type="civic.action.verified",
        source="community-centre-r29",
        data={"action": "bike_tidy"},
        time=at.isoformat(),
    )


async def test_a_version_published_mid_stream_scores_each_event_by_the_rules_of_its_time(
    stack: LocalStack, api: Api, rider: str, tmp_path: Path
) -> None:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(
        seconds=10
    )  # the CLI starts a Python process per call
    document |= {"version": 2, "effective_from": effective.isoformat()}
    document["categories"]["civic_practice"]["points_per_action"] = 7
    candidate = tmp_path / "v2.yaml"
    candidate.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    published = warmbee(stack, "rules", "publish", str(candidate))
    again = warmbee(stack, "rules", "publish", str(candidate))
    checked = warmbee(stack, "rules", "check", str(candidate))
    await asyncio.sleep(max((effective - datetime.now(UTC)).total_seconds(), 0) + 6)  # in force, caches reloaded
    before, after = civic(rider, effective - timedelta(minutes=1)), civic(rider, datetime.now(UTC))
    for e in (after, before):  # the late one last: scored by the rules of its own time
        assert (await api.publish(e, source="community-centre-r29")).status_code == 202

    assert checked.returncode == 0, checked.stderr
    assert published.returncode == 0, published.stderr
    assert again.returncode == 1
    assert "is not after the stored version 2" in again.stderr
    new = await api.wait_scored("community-centre-r29", str(after["id"]))
    old = await api.wait_scored("community-centre-r29", str(before["id"]))
    assert (new["points"], new["rule_version"]) == (7, 2)
    assert (old["points"], old["rule_version"]) == (5, 1)
    r = await api.http.get(f"{api.points_url}/v1/rules", headers=api.token_for_operator())
    assert r.json()["version"] == 2


@pytest.mark.after_all
@pytest.mark.timeout(600)  # a check of correctness, not of speed (make bench times replay): the whole suite's events
async def test_replay_after_the_whole_suite_rebuilds_the_live_ledger_exactly(stack: LocalStack) -> None:
    await asyncio.sleep(1)  # let the last batches commit
    result = await asyncio.to_thread(warmbee, stack, "replay", timeout_s=540)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical to the live ledger" in result.stdout
