"""Named crash points for fault tests: ``WARMBEE_FAILPOINTS=after_ledger_commit`` makes the process
kill itself with SIGKILL when it reaches that point, the way a power cut or OOM kill would."""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p for p in os.environ.get("WARMBEE_FAILPOINTS", "").split(",") if p)


def reach(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
