"""How the worker shares a fetch among the batches it writes at once."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from libs.platform.kafka import Message, split_by_partition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes | None], ...] = ()


def fetched(sizes: list[int]) -> dict[TopicPartition, list[Message]]:
    return {
        TopicPartition("activity-events", p): [Record("activity-events", p, o) for o in range(n)]
        for p, n in enumerate(sizes)
        if n
    }


@given(st.lists(st.integers(0, 300), max_size=16), st.integers(1, 4))
def test_every_partition_goes_whole_to_one_lane_and_no_lane_is_empty(sizes: list[int], lanes: int) -> None:
    batches = fetched(sizes)

    groups = split_by_partition(batches, lanes)

    assert len(groups) == min(lanes, len(batches))
    assert all(groups)
    seen = [tp for group in groups for tp in group]
    assert sorted(seen) == sorted(batches)  # each partition once, never split
    assert all(group[tp] is batches[tp] for group in groups for tp in group)


def test_lanes_get_about_the_same_number_of_messages() -> None:
    groups = split_by_partition(fetched([500, 400, 300, 200, 100, 100]), 2)

    assert sorted(sum(len(m) for m in g.values()) for g in groups) == [800, 800]
