"""The back-off `warmbee run`'s supervisor waits before starting a dead process again (pure)."""

from __future__ import annotations

import signal

import pytest

from libs.platform.localstack import RestartBackoff, RestartPolicy, describe_exit


def test_the_wait_starts_at_one_second_and_doubles_up_to_thirty() -> None:
    backoff = RestartBackoff()

    delays = [backoff.exited(uptime_s=0.5) for _ in range(8)]

    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.restarts == 8


def test_a_process_that_stayed_up_a_while_starts_the_series_again_but_keeps_its_restart_count() -> None:
    backoff = RestartBackoff(RestartPolicy(initial_s=1, max_s=30, reset_after_s=60))
    for _ in range(4):
        backoff.exited(uptime_s=2)

    after_a_good_run = backoff.exited(uptime_s=60)
    then_again = backoff.exited(uptime_s=3)

    assert (after_a_good_run, then_again) == (1, 2)
    assert backoff.restarts == 6  # as `kubectl get pods` counts RESTARTS: never reset


def test_just_under_the_reset_time_is_still_a_crash_loop() -> None:
    backoff = RestartBackoff(RestartPolicy(reset_after_s=60))
    backoff.exited(uptime_s=1)

    assert backoff.exited(uptime_s=59.9) == 2


@pytest.mark.parametrize(
    ("policy", "exits_in_a_row", "delay"),
    [
        (RestartPolicy(), 0, 1),
        (RestartPolicy(), 1, 1),
        (RestartPolicy(), 5, 16),
        (RestartPolicy(), 1000, 30),  # no overflow however long it goes on
        (RestartPolicy(initial_s=0.5, max_s=3), 3, 2),
        (RestartPolicy(initial_s=0.5, max_s=3), 4, 3),
    ],
)
def test_the_policy_doubles_from_initial_and_caps_at_max(
    policy: RestartPolicy, exits_in_a_row: int, delay: float
) -> None:
    assert policy.delay(exits_in_a_row) == delay


def test_each_process_has_its_own_series() -> None:
    worker, api = RestartBackoff(), RestartBackoff()
    for _ in range(3):
        worker.exited(uptime_s=1)

    assert api.exited(uptime_s=1) == 1
    assert worker.exited(uptime_s=1) == 8


@pytest.mark.parametrize(
    ("returncode", "words"),
    [
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-signal.SIGTERM, "killed by SIGTERM"),
        (1, "code 1"),
        (0, "code 0"),
        (-200, "killed by signal 200"),
    ],
)
def test_an_exit_is_said_in_words(returncode: int, words: str) -> None:
    assert describe_exit(returncode) == words
