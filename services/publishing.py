"""`warmbee publish FILE.jsonl`: a source's backlog, one CloudEvent a line, sent with the publishing client
(clients/python) in batches; what became of every line, summed up for the person who ran it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from libs.platform.settings import Settings
from warmbee_client import BatchResult, HttpPublisher, KafkaConfig, KafkaPublisher, Outcome


class Over(StrEnum):
    HTTP = "http"
    KAFKA = "kafka"


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based, as an editor shows it
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unreadable:
    number: int
    reason: str


def read_backlog(path: Path) -> Iterator[Line | Unreadable]:
    """Every non-blank line of the file: a JSON object, or why it is not one (it does not stop the rest)."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as exc:  # UnicodeDecodeError too
                yield Unreadable(number, f"not JSON: {exc}")
                continue
            if isinstance(value, dict):
                yield Line(number, value)
            else:
                yield Unreadable(number, f"not a JSON object but {type(value).__name__}: one CloudEvent a line")


@dataclass(slots=True)
class Summary:
    """What the run did, line by line where the service says so and in the service's counts otherwise."""

    over: Over
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    accepted_or_duplicate: int = 0  # events of batches counted mixed (the 202 says how many, not which)
    delivered: int = 0  # Kafka: the broker has them
    refused: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # reason: line numbers
    failed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # not known to have arrived
    unreadable: list[Unreadable] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not (self.refused or self.failed or self.unreadable)

    def add(self, batch: Sequence[Line], result: BatchResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.retries += result.retries
        counts = Counter(r.outcome for r in result.events)
        self.accepted_or_duplicate += counts[Outcome.ACCEPTED_OR_DUPLICATE]
        self.delivered += counts[Outcome.DELIVERED]
        for r in result.events:
            if r.outcome is Outcome.REFUSED:
                self.refused[r.reason or "refused"].append(batch[r.index].number)
            elif r.outcome is Outcome.FAILED:
                self.failed[r.reason or "failed"].append(batch[r.index].number)

    def report(self) -> list[str]:
        out = [f"{self.lines} lines sent over {self.over.value}"]
        if self.over is Over.HTTP:
            out.append(f"  accepted    {self.accepted}")
            out.append(f"  duplicates  {self.duplicates}")
            if self.accepted_or_duplicate:
                mixed = self.accepted_or_duplicate
                out.append(f"  (of these, {mixed} were in batches of both: the service counts, not names them)")
        else:
            out.append(f"  delivered   {self.delivered}  (validated by the points worker: a failure is a dead letter)")
        out.append(f"  refused     {sum(map(len, self.refused.values()))}")
        out.extend(_grouped(self.refused))
        if self.failed:
            failed = sum(map(len, self.failed.values()))
            out.append(f"  failed      {failed}  (not known to have arrived: send again, same ids)")
            out.extend(_grouped(self.failed))
        if self.unreadable:
            out.append(f"  unreadable  {len(self.unreadable)}")
            out.extend(f"    line {u.number}: {u.reason}" for u in self.unreadable[:20])
            if len(self.unreadable) > 20:
                out.append(f"    ... and {len(self.unreadable) - 20} more")
        if self.retries:
            out.append(f"  retries     {self.retries}")
        return out


def _grouped(reasons: dict[str, list[int]], show: int = 10) -> list[str]:
    """One line per reason, most frequent first, with the first line numbers that had it."""
    out = []
    for reason, numbers in sorted(reasons.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(map(str, numbers[:show])) + (", ..." if len(numbers) > show else "")
        out.append(f"    {len(numbers):>6} × {reason}  (line {shown})")
    return out


def kafka_config(settings: Settings) -> KafkaConfig:
    """The client's Kafka settings from the services' own, so `--over kafka` connects as a service does."""
    return KafkaConfig(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.topic_activity_events,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        enable_idempotence=settings.kafka_enable_idempotence,
    )


def batches(items: Iterator[Line | Unreadable], size: int, summary: Summary) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for item in items:
        summary.lines += 1
        if isinstance(item, Unreadable):
            summary.unreadable.append(item)
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def publish_backlog(
    path: Path,
    over: Over,
    *,
    url: str,
    token: str | None,
    batch_size: int,
    settings: Settings,
    advance: Callable[[int], None],
) -> Summary:
    """Send the file in batches of ``batch_size`` lines, in the file's order (one rider's events arrive as
    they were written, which caps rely on); ``advance`` is told how many lines each batch took."""
    summary = Summary(over)
    if over is Over.HTTP:
        if not token:
            raise ValueError("--token is needed over http: a source token whose sub is the events' source")
        async with HttpPublisher(url, token, max_batch=batch_size) as http:
            await _send(path, batch_size, summary, http.publish_batch, advance)
    else:
        async with KafkaPublisher(kafka_config(settings)) as kafka:
            await _send(path, batch_size, summary, kafka.publish_batch, advance)
    return summary


async def _send(
    path: Path,
    batch_size: int,
    summary: Summary,
    publish: Callable[[Sequence[dict[str, Any]]], Any],
    advance: Callable[[int], None],
) -> None:
    seen = 0
    for batch in batches(read_backlog(path), batch_size, summary):
        summary.add(batch, await publish([line.event for line in batch]))
        advance(summary.lines - seen)
        seen = summary.lines
    advance(summary.lines - seen)
