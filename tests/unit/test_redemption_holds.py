"""Redemption holds, pure: the state machine, the codes and the postings each step makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from libs.ledger.model import EntryKind, Posting
from services.redemption.domain.holds import (
    CODE_ALPHABET,
    CODE_LENGTH,
    QR_PREFIX,
    Resolution,
    Status,
    check_resolution,
    expiry,
    hold_entry,
    month_of,
    new_code,
    normalise_code,
    qr_payload,
    resolution_entry,
)

EXPIRES_AT = datetime(2024, 5, 2, 1, 0, tzinfo=UTC)
BEFORE_EXPIRY = EXPIRES_AT - timedelta(seconds=1)
AFTER_EXPIRY = EXPIRES_AT + timedelta(seconds=1)

HELD, CONFIRMED, CANCELLED, EXPIRED = Status.HELD, Status.CONFIRMED, Status.CANCELLED, Status.EXPIRED
CONFIRM, CANCEL, EXPIRE = Resolution.CONFIRM, Resolution.CANCEL, Resolution.EXPIRE


# --- the state machine -----------------------------------------------------------------------------

# (status, action, past its expiry?) -> the refusal's slug, or None when the action may happen.
# Only a held redemption changes; a cancel or an expiry asked again is a no-op (None), but a code
# pays once: confirming a confirmed redemption again is refused.
RESOLUTION_TABLE: list[tuple[Status, Resolution, bool, str | None]] = [
    (HELD, CONFIRM, False, None),
    (HELD, CONFIRM, True, "code-expired"),
    (HELD, CANCEL, False, None),
    (HELD, CANCEL, True, None),
    (HELD, EXPIRE, False, "not-expired"),
    (HELD, EXPIRE, True, None),
    (CONFIRMED, CONFIRM, False, "already-confirmed"),
    (CONFIRMED, CONFIRM, True, "already-confirmed"),
    (CONFIRMED, CANCEL, False, "already-confirmed"),
    (CONFIRMED, CANCEL, True, "already-confirmed"),
    (CONFIRMED, EXPIRE, False, "already-confirmed"),
    (CONFIRMED, EXPIRE, True, "already-confirmed"),
    (CANCELLED, CONFIRM, False, "already-cancelled"),
    (CANCELLED, CONFIRM, True, "already-cancelled"),
    (CANCELLED, CANCEL, False, None),
    (CANCELLED, CANCEL, True, None),
    (CANCELLED, EXPIRE, False, "already-cancelled"),
    (CANCELLED, EXPIRE, True, "already-cancelled"),
    (EXPIRED, CONFIRM, False, "code-expired"),
    (EXPIRED, CONFIRM, True, "code-expired"),
    (EXPIRED, CANCEL, False, "code-expired"),
    (EXPIRED, CANCEL, True, "code-expired"),
    (EXPIRED, EXPIRE, False, None),
    (EXPIRED, EXPIRE, True, None),
]


def test_the_table_covers_every_status_action_and_expiry() -> None:
    cases = {(status, action, past) for status, action, past, _ in RESOLUTION_TABLE}

    assert len(RESOLUTION_TABLE) == 4 * 3 * 2
    assert cases == {(s, a, p) for s in Status for a in Resolution for p in (False, True)}


@pytest.mark.parametrize(
    ("status", "action", "past_expiry", "refused_as"),
    RESOLUTION_TABLE,
    ids=[f"{s.value}-{a.value}-{'expired' if p else 'live'}" for s, a, p, _ in RESOLUTION_TABLE],
)
def test_check_resolution(status: Status, action: Resolution, past_expiry: bool, refused_as: str | None) -> None:
    now = AFTER_EXPIRY if past_expiry else BEFORE_EXPIRY

    refusal = check_resolution(status, action, EXPIRES_AT, now)

    assert (refusal.kind if refusal else None) == refused_as


def test_a_hold_is_expired_from_the_very_moment_of_its_expiry() -> None:
    assert check_resolution(HELD, CONFIRM, EXPIRES_AT, EXPIRES_AT) is not None
    assert check_resolution(HELD, EXPIRE, EXPIRES_AT, EXPIRES_AT) is None


def test_a_refusal_says_what_to_do_with_the_code() -> None:
    refusal = check_resolution(HELD, CONFIRM, EXPIRES_AT, AFTER_EXPIRY)

    assert refusal is not None
    assert refusal.title == "Code expired"
    assert refusal.detail.startswith("code: ")
    assert "2024-05-02T01:00:00+00:00" in refusal.detail
    assert "points were returned" in refusal.detail


def test_an_early_expiry_names_the_time_the_hold_runs_until() -> None:
    refusal = check_resolution(HELD, EXPIRE, EXPIRES_AT, BEFORE_EXPIRY)

    assert refusal is not None
    assert "2024-05-02T01:00:00+00:00" in refusal.detail


def test_expiry_is_the_creation_time_plus_the_ttl() -> None:
    created = datetime(2024, 5, 1, 1, 0, tzinfo=UTC)

    assert expiry(created, timedelta(hours=24)) == EXPIRES_AT


# --- codes -----------------------------------------------------------------------------------------


def test_a_code_is_8_characters_of_the_code_alphabet() -> None:
    codes = [new_code() for _ in range(500)]

    assert CODE_LENGTH == 8
    assert all(len(code) == 8 for code in codes)
    assert all(set(code) <= set(CODE_ALPHABET) for code in codes)


def test_the_code_alphabet_has_no_look_alikes() -> None:
    assert len(CODE_ALPHABET) == 31
    assert len(set(CODE_ALPHABET)) == 31
    assert not set("0O1IL") & set(CODE_ALPHABET)
    assert re.fullmatch(r"[2-9A-Z]+", CODE_ALPHABET)


def test_codes_are_drawn_at_random() -> None:
    assert len({new_code() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("AB3D-EF7H", "AB3DEF7H"),
        ("ab3d ef7h", "AB3DEF7H"),
        ("  AB3D EF7H  ", "AB3DEF7H"),
        ("a-b-3-d e-f-7-h", "AB3DEF7H"),
        ("WARMBEE1:AB3DEF7H", "AB3DEF7H"),
        ("warmbee1:ab3d-ef7h", "AB3DEF7H"),
        ("AB3DEF7H", "AB3DEF7H"),
    ],
)
def test_normalise_code_forgives_spaces_dashes_lower_case_and_the_qr_prefix(typed: str, code: str) -> None:
    assert normalise_code(typed) == code


def test_the_qr_payload_is_the_prefix_and_the_code_and_normalises_back() -> None:
    code = new_code()

    assert qr_payload(code) == f"{QR_PREFIX}{code}"
    assert QR_PREFIX == "WARMBEE1:"
    assert normalise_code(qr_payload(code)) == code


# --- postings --------------------------------------------------------------------------------------


def test_a_hold_moves_the_cost_from_available_to_held() -> None:
    tx = hold_entry("red-1", "rider-7", 30, "午餐套餐", "老王面馆", "rw-1")

    assert tx.kind is EntryKind.HOLD
    assert tx.postings == (Posting("rider:rider-7:available", -30), Posting("rider:rider-7:held", 30))
    assert tx.available_delta == -30
    assert tx.idempotency_key == "redemption:red-1:hold"
    assert tx.event_id == "red-1"
    assert tx.category == "redemption"
    assert tx.details == {"reward_id": "rw-1"}
    assert tx.reason.render() == "30 points held for 午餐套餐 at 老王面馆"


def test_a_confirmation_pays_the_held_points_to_the_partner_and_leaves_available_alone() -> None:
    tx = resolution_entry("red-1", "rider-7", 30, "午餐套餐", "p-9", CONFIRM, "p-9")

    assert tx.kind is EntryKind.REDEEM
    assert tx.postings == (Posting("rider:rider-7:held", -30), Posting("partner:p-9:redeemed", 30))
    assert tx.available_delta == 0
    assert tx.idempotency_key == "redemption:red-1:confirm"
    assert tx.actor == "p-9"
    assert "30 held points were paid" in tx.reason.render()


@pytest.mark.parametrize(
    ("action", "kind", "words"),
    [
        (CANCEL, EntryKind.RELEASE, "cancelled: 30 points returned"),
        (EXPIRE, EntryKind.EXPIRE, "expired unconfirmed: 30 points returned"),
    ],
)
def test_a_cancel_or_an_expiry_returns_the_held_points_to_available(
    action: Resolution, kind: EntryKind, words: str
) -> None:
    tx = resolution_entry("red-1", "rider-7", 30, "午餐套餐", "p-9", action, "someone")

    assert tx.kind is kind
    assert tx.postings == (Posting("rider:rider-7:held", -30), Posting("rider:rider-7:available", 30))
    assert tx.available_delta == 30
    assert tx.idempotency_key == f"redemption:red-1:{action.value}"
    assert words in tx.reason.render()


def test_each_step_of_a_redemption_has_a_key_of_its_own() -> None:
    keys = {hold_entry("red-1", "rider-7", 30, "t", "p", "rw").idempotency_key} | {
        resolution_entry("red-1", "rider-7", 30, "t", "p-9", action, None).idempotency_key for action in Resolution
    }

    assert len(keys) == 4


def test_rider_ids_with_colons_get_their_own_accounts() -> None:
    tx = hold_entry("red-1", "city:rider:7", 5, "t", "p", "rw")

    assert tx.postings == (Posting("rider:city:rider:7:available", -5), Posting("rider:city:rider:7:held", 5))


# --- months ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "month"),
    [
        (datetime(2024, 5, 31, 16, 30, tzinfo=UTC), "2024-06"),  # 00:30 on 1 June in Shanghai
        (datetime(2024, 5, 31, 15, 59, tzinfo=UTC), "2024-05"),  # 23:59 on 31 May in Shanghai
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), "2025-01"),  # midnight of the new year in Shanghai
        (datetime(2024, 6, 1, 0, 30, tzinfo=UTC), "2024-06"),
    ],
)
def test_month_of_counts_in_shanghai_time(moment: datetime, month: str) -> None:
    assert month_of(moment) == month
