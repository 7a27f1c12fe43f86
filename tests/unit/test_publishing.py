"""`warmbee publish`'s reading of a backlog and its summary, without a stack."""

from __future__ import annotations

from pathlib import Path

from services.publishing import Line, Over, Summary, Unreadable, batches, read_backlog
from warmbee_client import BatchResult, EventResult, Outcome
from warmbee_client.kafka import rider_key


def test_lines_are_numbered_as_an_editor_shows_them_and_a_bad_one_does_not_stop_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "backlog.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{"id": \n"just a string"\n\xff\xfe\n{"id": "b"}\n')
    read = list(read_backlog(path))
    assert [(type(r).__name__, r.number) for r in read] == [
        ("Line", 1),
        ("Unreadable", 3),
        ("Unreadable", 4),
        ("Unreadable", 5),
        ("Line", 6),
    ]
    assert isinstance(read[1], Unreadable)
    assert read[1].reason.startswith("not JSON: ")
    assert isinstance(read[2], Unreadable)
    assert read[2].reason == "not a JSON object but str: one CloudEvent a line"


def test_batches_hold_the_readable_lines_and_the_summary_counts_every_line() -> None:
    summary = Summary(Over.HTTP)
    items: list[Line | Unreadable] = [Line(1, {}), Unreadable(2, "not JSON: x"), Line(3, {}), Line(4, {})]
    assert [[line.number for line in b] for b in batches(iter(items), 2, summary)] == [[1, 3], [4]]
    assert summary.lines == 4
    assert [u.number for u in summary.unreadable] == [2]


def test_refusals_are_grouped_by_reason_most_frequent_first_with_their_line_numbers() -> None:
    summary = Summary(Over.HTTP)
    batch = [Line(n, {}) for n in (10, 11, 12, 13)]
    results = (
        EventResult(0, "a", Outcome.REFUSED, "data.hours: must be greater than 0, got -1"),
        EventResult(1, "b", Outcome.REFUSED, "subject: is required"),
        EventResult(2, "c", Outcome.REFUSED, "data.hours: must be greater than 0, got -1"),
        EventResult(3, "d", Outcome.ACCEPTED),
    )
    summary.lines = 4
    summary.add(batch, BatchResult(results, accepted=1, duplicates=0))
    assert summary.report() == [
        "4 lines sent over http",
        "  accepted    1",
        "  duplicates  0",
        "  refused     3",
        "         2 × data.hours: must be greater than 0, got -1  (line 10, 12)",
        "         1 × subject: is required  (line 11)",
    ]
    assert not summary.ok


def test_a_clean_run_is_ok() -> None:
    summary = Summary(Over.HTTP)
    summary.add([Line(1, {})], BatchResult((EventResult(0, "a", Outcome.DUPLICATE),), accepted=0, duplicates=1))
    assert summary.ok


def test_over_kafka_the_key_is_the_rider() -> None:
    assert rider_key({"subject": "rider-42", "id": "x"}) == b"rider-42"
    assert rider_key({"id": "x"}) is None  # no rider: no key (the worker dead-letters it with the reason)
