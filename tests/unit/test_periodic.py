"""Every background job runs through ``Periodic``: first run, interval, more work at once, failures survived."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from libs.platform.periodic import Background, Periodic


def _runs(job: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("warmbee_job_runs_total", {"job": job, "outcome": outcome}) or 0.0


async def _run_for(job: Periodic, seconds: float) -> None:
    task = asyncio.create_task(job.run())
    await asyncio.sleep(seconds)
    job.stop()
    await asyncio.wait_for(task, 2)


@pytest.mark.asyncio
async def test_a_job_with_first_after_0_runs_at_once_and_then_every_interval() -> None:
    calls: list[float] = []

    async def step() -> None:
        calls.append(asyncio.get_running_loop().time())

    await _run_for(Periodic("t_interval", step, 0.1, first_after_s=0, jitter=0), 0.35)

    assert 3 <= len(calls) <= 5
    assert calls[1] - calls[0] == pytest.approx(0.1, abs=0.05)


@pytest.mark.asyncio
async def test_a_job_waits_one_interval_before_its_first_run_by_default() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)

    await _run_for(Periodic("t_first", step, 10), 0.2)

    assert calls == []


@pytest.mark.asyncio
async def test_a_step_that_finds_more_work_runs_again_at_once() -> None:
    pages = [True, True, True, False]

    async def step() -> bool:
        return pages.pop(0) if pages else False

    await _run_for(Periodic("t_more", step, 60, first_after_s=0), 0.2)

    assert pages == []
    assert _runs("t_more", "ok") == 4


@pytest.mark.asyncio
async def test_a_step_that_raises_is_counted_and_the_job_goes_on() -> None:
    attempts: list[int] = []

    async def step() -> None:
        attempts.append(1)
        if len(attempts) <= 2:
            raise ValueError("a defect")

    await _run_for(Periodic("t_fails", step, 0.05, first_after_s=0, jitter=0), 1.2)

    assert _runs("t_fails", "failed") == 2
    assert _runs("t_fails", "ok") >= 1
    assert REGISTRY.get_sample_value("warmbee_loop_failures_total", {"loop": "t_fails"}) == 2
    assert REGISTRY.get_sample_value("warmbee_job_last_success_timestamp_seconds", {"job": "t_fails"})


@pytest.mark.asyncio
async def test_background_starts_every_part_and_stops_them_together() -> None:
    ran: list[str] = []

    async def one() -> None:
        ran.append("one")

    async def two() -> None:
        ran.append("two")

    async with Background(Periodic("t_one", one, 60, first_after_s=0), Periodic("t_two", two, 60, first_after_s=0)):
        await asyncio.sleep(0.1)

    assert sorted(ran) == ["one", "two"]
