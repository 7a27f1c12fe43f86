"""The relay's pure helpers: how large a message is to the producer, how headers are bounded, which
errors park a row and which are retried."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from libs.platform.relay import (
    HEADER_VALUE_MAX_BYTES,
    HEADERS_DROPPED_HEADER,
    HEADERS_MAX_BYTES,
    bound_headers,
    encoded_size,
    refused_for_good,
    topic_problem,
    transient_render_error,
    truncate_utf8,
)


def test_the_size_is_what_the_producer_checks_and_counts_key_value_and_headers() -> None:
    headers = [("h", b"x" * 100)]
    size = encoded_size(b"key", b"v" * 1000, headers)
    assert size == DefaultRecordBatchBuilder.estimate_size_in_bytes(b"key", b"v" * 1000, headers)
    assert size > 3 + 1000 + 1 + 100  # the overhead of the record and its batch
    assert encoded_size(b"key", b"v" * 1000, []) < size
    assert encoded_size(None, b"v" * 1000, []) < encoded_size(b"key", b"v" * 1000, [])


def test_a_value_at_the_bound_is_kept_whole_and_a_longer_one_is_cut_with_a_marker() -> None:
    assert truncate_utf8("a" * 1024, 1024) == b"a" * 1024
    cut = truncate_utf8("a" * 5000, 1024)
    assert len(cut) <= 1024
    assert cut.startswith(b"a" * 900)
    assert cut.endswith("…[truncated from 5000 bytes]".encode())


def test_a_cut_never_splits_a_character() -> None:
    text = "积分" * 2000  # three bytes a character
    for limit in range(100, 110):
        cut = truncate_utf8(text, limit)
        assert len(cut) <= limit
        cut.decode("utf-8")  # valid UTF-8, or this raises


@given(st.text(max_size=3000), st.integers(min_value=64, max_value=2048))
def test_any_text_comes_out_as_valid_utf8_within_the_bound(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert len(cut) <= limit
    decoded = cut.decode("utf-8")
    if len(text.encode("utf-8", "replace")) <= limit:
        assert decoded == text.encode("utf-8", "replace").decode()


def test_a_lone_surrogate_becomes_a_replacement_not_an_error() -> None:
    assert truncate_utf8("a\ud800b", 100) == b"a?b"


def test_headers_are_bounded_one_by_one_and_in_all() -> None:
    reason = "could not be scored: " + "x" * 100_000
    bounded = bound_headers([("warmbee-dead-letter-reason", reason), ("warmbee-original-topic", "activity-events")])
    assert bounded[1] == ("warmbee-original-topic", b"activity-events")
    assert len(bounded[0][1]) <= HEADER_VALUE_MAX_BYTES
    assert bounded[0][1].startswith(b"could not be scored: xxx")

    many = bound_headers([(f"h{i}", "y" * 1000) for i in range(40)])
    assert sum(len(k.encode()) + len(v) for k, v in many) <= HEADERS_MAX_BYTES
    assert many[-1][0] == HEADERS_DROPPED_HEADER
    kept = len(many) - 1
    assert many[-1][1] == str(40 - kept).encode()
    assert [k for k, _ in many[:-1]] == [f"h{i}" for i in range(kept)]


def test_headers_within_the_bounds_go_out_as_they_are() -> None:
    assert bound_headers([("a", "1"), ("b", "ü")]) == [("a", b"1"), ("b", "ü".encode())]
    assert bound_headers([]) == []


def test_a_header_name_is_bounded_too() -> None:
    ((name, _),) = bound_headers([("k" * 10_000, "v")])
    assert len(name.encode()) <= 256


@pytest.mark.parametrize("topic", ["activity-events", "a.b_c-D9", "x" * 249])
def test_a_kafka_topic_name_passes(topic: str) -> None:
    assert topic_problem(topic) is None


@pytest.mark.parametrize("topic", ["", ".", "..", "bad topic!", "x" * 250, "ümlaut", "a/b"])
def test_a_name_kafka_refuses_is_a_problem(topic: str) -> None:
    assert topic_problem(topic) is not None


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.RecordTooLargeError(),
        kafka_errors.InvalidTopicError(),
        kafka_errors.CorruptRecordException(),
        kafka_errors.UnknownError(),  # what Tansu's INVALID_RECORD (a record failing its schema) arrives as
    ],
)
def test_refusals_of_the_record_park_it(error: Exception) -> None:
    assert refused_for_good(error)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.KafkaConnectionError(),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.UnknownTopicOrPartitionError(),
        kafka_errors.TopicAuthorizationFailedError(),  # about the credentials, not the record
        kafka_errors.ProducerClosed(),
        TimeoutError(),
        ValueError("not from Kafka"),
    ],
)
def test_other_failures_are_retried(error: Exception) -> None:
    assert not refused_for_good(error)


def test_a_renderer_error_that_may_pass_is_retried_and_one_that_would_recur_parks_its_row() -> None:
    assert transient_render_error(asyncpg.exceptions.DeadlockDetectedError("deadlock"))
    assert transient_render_error(asyncpg.exceptions.QueryCanceledError("statement timeout"))
    assert transient_render_error(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert transient_render_error(ConnectionResetError())
    assert transient_render_error(TimeoutError())
    assert not transient_render_error(asyncpg.exceptions.NumericValueOutOfRangeError("out of range"))
    assert not transient_render_error(asyncpg.exceptions.UndefinedColumnError("no such column"))
    assert not transient_render_error(ValueError("malformed reference"))
    assert not transient_render_error(KeyError("kind"))
