"""Publishing over HTTP: ``POST /v1/events`` of the events service, one event or batches of at most its
limit, retried with the same body (the same ids) while the service says "later"."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from warmbee_client.outcomes import BatchResult, EventResult, Outcome
from warmbee_client.retry import RETRYABLE_STATUSES, RetryBudget, RetryPolicy, parse_retry_after

EVENT_TYPE = "application/cloudevents+json"
BATCH_TYPE = "application/cloudevents-batch+json"
MAX_BATCH = 1000  # the events service's default (API.md); a service configured lower answers 422


@dataclass(frozen=True, slots=True)
class _Answer:
    """The service's last word on one request: 202 counts, a problem, or nothing (retries spent)."""

    status: int | None
    body: Any
    retries: int
    failure: str | None = None


def _encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _reason(problem: Any, status: int) -> str:
    if isinstance(problem, dict):
        text = problem.get("detail") or problem.get("title")
        if isinstance(text, str) and text:
            return text
    return f"HTTP {status}"


class HttpPublisher:
    """A source system's publisher: ``async with HttpPublisher(url, token) as p: await p.publish_batch(...)``.

    ``url`` is the events service's base URL; ``token`` a bearer token of role ``source`` whose ``sub`` is
    the events' ``source``. ``sleep`` and ``rng`` are there for tests of the timing."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        max_batch: int = MAX_BATCH,
        timeout_s: float = 30.0,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/v1/events"
        self.policy = policy or RetryPolicy()
        self.budget = budget or RetryBudget()
        self.max_batch = max_batch
        self._headers = {"authorization": f"Bearer {token}"}
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._own_http = http is None
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._sleep = sleep

    async def __aenter__(self) -> HttpPublisher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def publish(self, event: Mapping[str, Any]) -> BatchResult:
        """One event, as ``application/cloudevents+json``."""
        answer = await self._post(_encode(event), EVENT_TYPE)
        return self._results([event], [0], answer, single=True)

    async def publish_batch(self, events: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Any number of events, in requests of at most ``max_batch``. An event the service refuses is
        reported with its reason and the rest of its request is sent again without it (the service accepts
        all of a request or nothing, so one bad event would otherwise hold back its whole batch)."""
        encoded = [_encode(e) for e in events]
        results: list[EventResult] = []
        accepted = duplicates = retries = 0
        for start in range(0, len(events), self.max_batch):
            chunk = list(range(start, min(start + self.max_batch, len(events))))
            part = await self._publish_chunk(events, encoded, chunk)
            results.extend(part.events)
            accepted, duplicates, retries = (
                accepted + part.accepted,
                duplicates + part.duplicates,
                retries + part.retries,
            )
        return BatchResult(tuple(sorted(results, key=lambda r: r.index)), accepted, duplicates, retries)

    async def _publish_chunk(
        self, events: Sequence[Mapping[str, Any]], encoded: Sequence[bytes], positions: list[int]
    ) -> BatchResult:
        refused: list[EventResult] = []
        retries = 0
        while positions:
            body = b"[" + b",".join(encoded[i] for i in positions) + b"]"
            answer = await self._post(body, BATCH_TYPE)
            retries += answer.retries
            singled_out = self._singled_out(answer, positions, events)
            if not singled_out:
                done = self._results(events, positions, answer, single=False)
                events_done = tuple(refused) + done.events
                return BatchResult(events_done, done.accepted, done.duplicates, retries)
            refused.extend(singled_out)
            named = {r.index for r in singled_out}
            positions = [i for i in positions if i not in named]
        return BatchResult(tuple(refused), 0, 0, retries)

    def _singled_out(
        self, answer: _Answer, positions: list[int], events: Sequence[Mapping[str, Any]]
    ) -> list[EventResult]:
        """The events a refusal names in its ``errors`` (422 invalid, 409 an id reused), by our index."""
        if answer.status is None or answer.status < 400 or not isinstance(answer.body, dict):
            return []
        errors = answer.body.get("errors")
        if not isinstance(errors, list):
            return []
        named: dict[int, str] = {}
        for error in errors:
            if isinstance(error, dict) and isinstance(error.get("index"), int) and 0 <= error["index"] < len(positions):
                named.setdefault(positions[error["index"]], str(error.get("reason") or _reason(answer.body, 0)))
        return [EventResult(i, _event_id(events[i]), Outcome.REFUSED, reason) for i, reason in named.items()]

    def _results(
        self, events: Sequence[Mapping[str, Any]], positions: list[int], answer: _Answer, *, single: bool
    ) -> BatchResult:
        def each(outcome: Outcome, reason: str | None = None) -> tuple[EventResult, ...]:
            return tuple(EventResult(i, _event_id(events[i]), outcome, reason) for i in positions)

        if answer.status is None:
            return BatchResult(each(Outcome.FAILED, answer.failure), 0, 0, answer.retries)
        if answer.status == 202 and isinstance(answer.body, dict):
            accepted, duplicates = int(answer.body.get("accepted", 0)), int(answer.body.get("duplicates", 0))
            if duplicates == 0:
                outcome = Outcome.ACCEPTED
            elif accepted == 0:
                outcome = Outcome.DUPLICATE
            else:
                outcome = Outcome.ACCEPTED_OR_DUPLICATE
            return BatchResult(each(outcome), accepted, duplicates, answer.retries)
        if single:
            named = self._singled_out(answer, positions, events)
            if named:
                return BatchResult(tuple(named), 0, 0, answer.retries)
        return BatchResult(each(Outcome.REFUSED, _reason(answer.body, answer.status)), 0, 0, answer.retries)

    async def _post(self, body: bytes, media: str) -> _Answer:
        """POST until the service gives an answer that is not "later", the policy gives up or the budget
        is spent. The same ``body`` every time: the same ids, so nothing is accepted twice."""
        headers = {**self._headers, "content-type": media}
        retry = 0
        self.budget.record_request()
        while True:
            try:
                response = await self._http.post(self.endpoint, content=body, headers=headers)
            except httpx.TransportError as exc:  # no answer: it may or may not have arrived; the ids decide
                status, retry_after, failure = None, None, f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return _Answer(response.status_code, _json(response), retry)
                status, failure = response.status_code, _reason(_json(response), response.status_code)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            pause = self.policy.delay(retry + 1, retry_after, self._rng)
            if pause is None or not self.budget.try_spend():
                gave_up = f"gave up after {retry + 1} attempt(s): {failure}"
                return _Answer(None, None, retry, gave_up if status is None else f"{gave_up} (HTTP {status})")
            retry += 1
            await self._sleep(pause)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _event_id(event: Mapping[str, Any]) -> str | None:
    value = event.get("id") if isinstance(event, Mapping) else None
    return value if isinstance(value, str) else None
