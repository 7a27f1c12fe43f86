"""The ledger's naming conventions, in one place: account addresses and idempotency keys.

Every address and key is built here and passed to SQL as a parameter; no query builds one by
concatenation. An idempotency key names what its entry is of, so the same thing twice is one entry.
"""

from __future__ import annotations

PROGRAMME_ISSUED = "programme:issued"
PROGRAMME_ADJUSTMENTS = "programme:adjustments"
PROGRAMME_LAPSED = "programme:lapsed"


# --- accounts ----------------------------------------------------------------------------------------


def rider_available(rider_id: str) -> str:
    return f"rider:{rider_id}:available"


def rider_held(rider_id: str) -> str:
    return f"rider:{rider_id}:held"


def partner_redeemed(partner_id: str) -> str:
    """Where a confirmed redemption's points go: what the sub-district settles with the partner."""
    return f"partner:{partner_id}:redeemed"


def is_rider_account(account: str) -> bool:
    return account.startswith("rider:")


def rider_of(account: str) -> str | None:
    """The rider id of a rider account (ids may themselves contain colons)."""
    if not is_rider_account(account):
        return None
    body = account[len("rider:") :]
    rider_id, _, _bucket = body.rpartition(":")
    return rider_id


# --- idempotency keys --------------------------------------------------------------------------------


def award_key(source: str, event_id: str) -> str:
    """``award:{source}:{event_id}`` with ``%`` and ``:`` percent-encoded in both, so two events whose
    ``(source, id)`` differ never share a key (``("a", "b:c")`` and ``("a:b", "c")`` once did). Ids without
    either character keep the key they always had; whether an event is scored is asked of the entry's
    columns (``LedgerStore.awarded``), so an event keyed the old way is still known."""
    return f"award:{_key_part(source)}:{_key_part(event_id)}"


def adjustment_key(operator: str, idempotency_key: str) -> str:
    """An operator's adjustment: the operator's own Idempotency-Key, within that operator's keys."""
    return f"adjustment:{operator}:{idempotency_key}"


def redemption_key(redemption_id: str, step: str) -> str:
    """One step of a redemption (``hold``, then one of ``confirm``, ``cancel``, ``expire``): at most one each."""
    return f"redemption:{redemption_id}:{step}"


def dispute_key(dispute_id: str) -> str:
    """The adjustment of an upheld dispute: at most one per dispute."""
    return f"dispute:{dispute_id}:upheld"


def lapse_key(lot_id: int) -> str:
    """The lapse of one lot: at most one, whoever runs the lapse job and however often."""
    return f"lapse:{lot_id}"


def _key_part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")
