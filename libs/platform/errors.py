"""Domain errors and the one table that turns each kind into a problem (RFC 9457): type, status, title.

A domain module raises a ``DomainError`` with its ``kind`` and a detail that says what to fix; it knows
nothing of HTTP. ``libs/platform/http.py`` renders it through ``PROBLEMS``, the only place where a kind
gets its status, for every service. The problem ``type`` is ``https://warmbee.dev/problems/<kind>``, and
clients branch on it: a kind is never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.i18n.language import Language
from libs.i18n.problems import P_, Message
from libs.i18n.problems import title as translated


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    title: str


PROBLEMS: dict[str, ProblemType] = {
    # Who is asking (every service).
    "unauthenticated": ProblemType(401, P_("Authentication required")),
    "invalid-token": ProblemType(401, P_("Invalid token")),
    "forbidden": ProblemType(403, P_("Not allowed")),
    # The request as sent (every service).
    "not-found": ProblemType(404, P_("Not Found")),
    "method-not-allowed": ProblemType(405, P_("Method Not Allowed")),
    "http-error": ProblemType(400, P_("Bad Request")),  # any other status Starlette answers; it keeps its own
    "body-too-large": ProblemType(413, P_("Request body too large")),
    "unsupported-media-type": ProblemType(415, P_("Unsupported media type")),
    "invalid-request": ProblemType(422, P_("The request is not valid")),
    "malformed-json": ProblemType(422, P_("Malformed JSON")),
    "invalid-cursor": ProblemType(422, P_("Invalid cursor")),
    "idempotency-key-required": ProblemType(422, P_("Idempotency-Key required")),
    "idempotency-key-reused": ProblemType(409, P_("Idempotency-Key reused")),
    # Our side (every service).
    "internal": ProblemType(500, P_("Internal error")),
    "database-unavailable": ProblemType(503, P_("Temporarily unavailable")),
    "not-ready": ProblemType(503, P_("Not ready")),
    # Events.
    "invalid-event": ProblemType(422, P_("Invalid event")),
    "invalid-batch": ProblemType(422, P_("Invalid batch")),
    "event-id-reused": ProblemType(409, P_("Event id reused")),
    "source-mismatch": ProblemType(403, P_("Not your source")),
    "dead-letter-unknown": ProblemType(404, P_("Unknown dead letter")),
    # Points.
    "event-unknown": ProblemType(404, P_("Unknown event")),
    "insufficient-points": ProblemType(409, P_("Not enough points")),
    "entry-unknown": ProblemType(404, P_("Unknown entry")),
    "dispute-unknown": ProblemType(404, P_("Unknown dispute")),
    "dispute-open": ProblemType(409, P_("Dispute already open")),
    "dispute-resolved": ProblemType(409, P_("Dispute already resolved")),
    "no-rules": ProblemType(404, P_("No rules in force")),
    "rules-refused": ProblemType(422, P_("Rules refused")),
    "rules-version-published": ProblemType(409, P_("Rules version already published")),
    "invalid-rules": ProblemType(422, P_("Invalid rules file")),
    "invalid-period": ProblemType(422, P_("Invalid period")),
    # Redemption.
    "partner-exists": ProblemType(409, P_("Partner exists")),
    "partner-unknown": ProblemType(422, P_("Unknown partner")),
    "partner-required": ProblemType(422, P_("partner_id required")),
    "reward-exists": ProblemType(409, P_("Reward exists")),
    "reward-unknown": ProblemType(404, P_("Unknown reward")),
    "reward-inactive": ProblemType(409, P_("Reward not available")),
    "out-of-stock": ProblemType(409, P_("Out of stock")),
    "monthly-limit-reached": ProblemType(409, P_("Monthly limit reached")),
    "redemption-unknown": ProblemType(404, P_("Unknown redemption")),
    "code-unknown": ProblemType(404, P_("Unknown code")),
    "code-expired": ProblemType(409, P_("Code expired")),
    "already-confirmed": ProblemType(409, P_("Already confirmed")),
    "already-cancelled": ProblemType(409, P_("Already cancelled")),
    "not-expired": ProblemType(409, P_("Not expired yet")),
    "too-many-wrong-codes": ProblemType(429, P_("Too many wrong codes")),
    # Notifications.
    "webhook-unknown": ProblemType(404, P_("Unknown webhook")),
    "delivery-unknown": ProblemType(404, P_("Unknown delivery")),
    "webhook-url-refused": ProblemType(422, P_("Webhook URL refused")),
    "kind-not-allowed": ProblemType(403, P_("Kind not allowed")),
    "already-delivered": ProblemType(409, P_("Already delivered")),
    # Pages.
    "invalid-code": ProblemType(422, P_("Invalid code")),
    "invalid-payload": ProblemType(422, P_("Invalid QR payload")),
}


class DomainError(Exception):
    """A request the domain refuses; nothing was changed.

    ``kind`` names its entry in ``PROBLEMS`` (a subclass may fix it as a class attribute); ``detail``
    says what to fix, naming the field: English text, or a ``Message`` of the problems catalogue, which
    the problem writes in the reader's language; ``title`` overrides the kind's (an English msgid);
    ``extra`` are members the problem carries besides (for example ``retry_after_s``, which also becomes
    the ``Retry-After`` header)."""

    kind: str = "invalid-request"

    def __init__(
        self, detail: str | Message, *, kind: str | None = None, title: str | None = None, **extra: Any
    ) -> None:
        says = detail if isinstance(detail, Message) else None
        english = detail.render("en") if isinstance(detail, Message) else detail
        super().__init__(english)
        if kind is not None:
            self.kind = kind
        if self.kind not in PROBLEMS:
            raise KeyError(f"problem kind {self.kind!r} is not in libs/platform/errors.py PROBLEMS")
        self.detail = english
        self.says = says
        self.title = title or PROBLEMS[self.kind].title
        self.extra: dict[str, Any] = extra

    @property
    def status(self) -> int:
        return PROBLEMS[self.kind].status

    def words(self, language: Language) -> tuple[str, str]:
        """The title and the detail in ``language``."""
        detail = self.says.render(language) if self.says is not None else self.detail
        return translated(self.title, language), detail
