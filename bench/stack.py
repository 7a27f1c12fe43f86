"""What every bench on a stack of its own starts with: the stack on a fresh database, and the head of its
results (when, on what machine)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libs.platform.db import drop_database
from libs.platform.localstack import LocalStack
from libs.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


async def fresh_stack(settings: Settings, logs: str = "bench-logs") -> LocalStack:
    """A stack (nothing started yet) whose ports are free, on a database dropped first: every run starts
    from the same empty state, whatever an earlier run left."""
    stack = LocalStack(settings, ROOT / ".run" / logs)
    stack.check_ports_free()
    await drop_database(settings)
    return stack


def results_head(**fields: Any) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **fields,
    }


def write_results(name: str, result: dict[str, Any]) -> None:
    """``result`` as bench/results/``name`` (JSON), and where it went."""
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
