"""A rules version's shortest lead must outlast a worker's cached rules: Settings refuses less."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.platform.settings import Settings


def test_the_defaults_give_a_lead_longer_than_the_reload_interval_plus_the_future_slack() -> None:
    s = Settings()

    assert s.rules_min_lead_s > s.rules_reload_s + s.event_future_slack_s


@pytest.mark.parametrize(
    ("lead", "reload", "slack"),
    [
        (5.0, 5.0, 0),  # equal to the reload interval
        (4.0, 5.0, 0),  # shorter than it
        (305.0, 5.0, 300),  # equal to reload plus slack: an event timed ahead could still be scored late
        (60.0, 5.0, 300),  # longer than the reload, but not than the slack
    ],
)
def test_a_lead_no_longer_than_the_reload_interval_plus_the_future_slack_is_refused(
    lead: float, reload: float, slack: int
) -> None:
    with pytest.raises(ValidationError, match="WARMBEE_RULES_MIN_LEAD_S"):
        Settings(rules_min_lead_s=lead, rules_reload_s=reload, event_future_slack_s=slack)


def test_a_lead_just_longer_than_the_reload_interval_plus_the_future_slack_is_accepted() -> None:
    s = Settings(rules_min_lead_s=3.5, rules_reload_s=1.0, event_future_slack_s=2)

    assert (s.rules_min_lead_s, s.rules_reload_s) == (3.5, 1.0)


def test_the_refusal_says_which_settings_and_why() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(rules_min_lead_s=10, rules_reload_s=30, event_future_slack_s=0)

    message = str(refused.value)
    assert "WARMBEE_RULES_RELOAD_S (30)" in message
    assert "WARMBEE_EVENT_FUTURE_SLACK_S (0)" in message
    assert "old one" in message
