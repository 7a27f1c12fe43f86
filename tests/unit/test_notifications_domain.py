"""The notifications service's pure rules: the kind of a points-ledger event, who may hear of it, and
when a failed delivery is tried again."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest

from libs.platform.auth import Role
from libs.platform.errors import DomainError
from services.notifications.domain.kinds import KINDS, MAY_SUBSCRIBE, ledger_event, may_hear
from services.notifications.domain.retries import PAUSES_S, gives_up, next_pause_s
from services.notifications.domain.subscriptions import (
    UrlPolicy,
    address_problem,
    allowed_kinds,
    new_secret,
    url_problem,
)


def cloud_event(kind: str, **data: Any) -> dict[str, Any]:
    return {"id": "entry-7", "type": f"points.{kind}.recorded", "subject": "rider-1", "data": {"kind": kind, **data}}


@pytest.mark.parametrize(
    ("entry_kind", "kind"),
    [
        ("award", "points.awarded"),
        ("adjustment", "points.adjusted"),
        ("lapse", "points.lapsed"),
        ("hold", "redemption.held"),
        ("redeem", "redemption.confirmed"),
        ("release", "redemption.cancelled"),
        ("expire", "redemption.expired"),
    ],
)
def test_every_ledger_entry_kind_has_its_webhook_kind(entry_kind: str, kind: str) -> None:
    event = ledger_event(cloud_event(entry_kind))
    assert event is not None
    assert (event.kind, event.event_id, event.rider_id) == (kind, "entry-7", "rider-1")


@pytest.mark.parametrize(
    "odd",
    [
        {},
        {"type": "points.unknown.recorded", "id": "x", "subject": "r", "data": {}},
        {"type": "points.award.recorded", "id": 7, "subject": "r", "data": {}},
        {"type": "points.award.recorded", "id": "x", "subject": "r", "data": "not an object"},
        {"type": None, "id": "x", "subject": "r", "data": {}},
    ],
)
def test_an_event_no_subscriber_can_ask_for_is_none(odd: dict[str, Any]) -> None:
    assert ledger_event(odd) is None


def test_a_partner_hears_only_of_its_own_redemptions_and_a_source_of_its_own_events() -> None:
    hold = ledger_event(cloud_event("hold", event_id="red-1", source="warmbee/redemption"))
    award = ledger_event(cloud_event("award", event_id="e-1", source="grid-office"))
    assert hold is not None
    assert award is not None
    assert hold.redemption_id == "red-1"
    assert award.redemption_id is None
    assert may_hear(Role.PARTNER, "noodles", hold, partner_id="noodles")
    assert not may_hear(Role.PARTNER, "barber", hold, partner_id="noodles")
    assert not may_hear(Role.PARTNER, "noodles", award, partner_id=None)
    assert may_hear(Role.SOURCE, "grid-office", award, None)
    assert not may_hear(Role.SOURCE, "volunteer-platform", award, None)
    assert not may_hear(Role.SOURCE, "warmbee/redemption", hold, None)  # a redemption is not a source's event
    assert may_hear(Role.OPERATOR, "ops", hold, "noodles")
    assert not may_hear(Role.RIDER, "rider-1", award, None)


def test_only_operators_partners_and_sources_subscribe() -> None:
    assert MAY_SUBSCRIBE[Role.OPERATOR] == frozenset(KINDS)
    assert all(k.startswith("redemption.") for k in MAY_SUBSCRIBE[Role.PARTNER])
    assert MAY_SUBSCRIBE[Role.SOURCE] == {"points.awarded", "event.dead_lettered"}
    assert Role.RIDER not in MAY_SUBSCRIBE


def test_the_first_retry_is_within_10_s_then_pauses_grow_for_at_least_a_day() -> None:
    assert next_pause_s(1) <= 10
    pauses = [next_pause_s(n) for n in range(1, 40)]
    assert pauses == sorted(pauses)
    assert sum(PAUSES_S) < 24 * 3600 < sum(pauses)  # the last pause repeats until the day is over
    assert next_pause_s(0) == next_pause_s(1)
    assert not gives_up(23 * 3600, 24 * 3600)
    assert gives_up(24 * 3600, 24 * 3600)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address refused, not bound
        ("240.0.0.1", "reserved"),
    ],
)
def test_addresses_a_receiver_may_not_be_at(address: str, refused: str | None) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert (problem is None) == (refused is None)
    if refused is not None:
        assert refused in (problem or "")


def test_urls_local_runs_take_and_others_do_not() -> None:
    local, guarded = UrlPolicy(local=True), UrlPolicy(local=False)
    assert url_problem("http://127.0.0.1:8080/hook", local) is None
    assert url_problem("http://127.0.0.1:8080/hook", guarded) == "must start with https://"
    assert "loopback" in (url_problem("https://127.0.0.1/hook", guarded) or "")
    assert url_problem("https://hooks.example.cn/warmbee", guarded) is None
    assert "user or password" in (url_problem("https://a:b@example.cn/", guarded) or "")
    assert "fragment" in (url_problem("https://example.cn/#x", guarded) or "")
    assert "not a URL" in (url_problem("https://example.cn:port/", guarded) or "")


def test_an_operator_may_allow_a_network_of_its_own() -> None:
    own = UrlPolicy(local=False, require_https=False, allowed=(ipaddress.ip_network("10.20.0.0/16"),))
    assert url_problem("http://10.20.3.4/gateway", own) is None
    assert "private" in (url_problem("http://10.21.3.4/gateway", own) or "")


def test_kinds_are_kept_once_in_order_and_refused_beyond_the_role() -> None:
    assert allowed_kinds(Role.PARTNER, ["redemption.held", "redemption.held", "redemption.expired"]) == [
        "redemption.held",
        "redemption.expired",
    ]
    with pytest.raises(DomainError, match=r"not to points\.awarded") as refused:
        allowed_kinds(Role.PARTNER, ["redemption.held", "points.awarded"])
    assert refused.value.kind == "kind-not-allowed"
    with pytest.raises(DomainError) as rider:
        allowed_kinds(Role.RIDER, ["points.awarded"])
    assert rider.value.kind == "forbidden"


def test_a_new_secret_is_a_standard_webhooks_secret_and_never_the_same() -> None:
    from standardwebhooks.webhooks import Webhook

    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") for s in secrets)
    signed = Webhook(next(iter(secrets))).sign("msg_1", datetime.now(UTC), "{}")
    assert signed.startswith("v1,")


def test_the_sealing_key_is_refused_in_production_when_it_is_the_public_local_one() -> None:
    from libs.platform.settings import Settings
    from services.notifications.sealing import Sealer

    with pytest.raises(ValueError, match="must be set in production"):
        Sealer.of(Settings(env="production", auth_issuer="https://id.example", auth_audience="https://api.example"))
    with pytest.raises(ValueError, match="Fernet key"):
        Sealer.of(Settings(notify_secret_key="short"))
    sealer = Sealer.of(Settings())
    assert sealer.unseal(sealer.seal("whsec_x")) == "whsec_x"


def test_the_redemption_services_own_events_name_their_redemption_and_partner() -> None:
    held = ledger_event(
        {
            "id": "redemption-r-1-held",
            "type": "redemption.held",
            "subject": "rider-1",
            "data": {"redemption_id": "r-1", "partner_id": "noodles", "cost": 30, "status": "held"},
        }
    )
    assert held is not None
    assert (held.kind, held.redemption_id, held.partner_id) == ("redemption.held", "r-1", "noodles")
    assert may_hear(Role.PARTNER, "noodles", held, held.partner_id)
