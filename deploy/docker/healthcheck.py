"""The container health check: GET /healthz of the service this container runs.

One image runs every warmbee process and the command chooses which, so the check reads the command
of process 1 to know which port to ask. The workers have no HTTP API: each is checked on the /metrics
port it serves. A one-shot command (``warmbee migrate``) has nothing to check and passes.
``WARMBEE_HEALTHCHECK_URL`` overrides the choice. Standard library only: it runs in the image.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence

# (command words) -> (port variable, default port, path)
PROBES = {
    ("serve", "events"): ("WARMBEE_EVENTS_PORT", 8001, "/healthz"),
    ("serve", "points"): ("WARMBEE_POINTS_PORT", 8002, "/healthz"),
    ("serve", "redemption"): ("WARMBEE_REDEMPTION_PORT", 8003, "/healthz"),
    ("serve", "pages"): ("WARMBEE_PAGES_PORT", 8004, "/healthz"),
    ("serve", "notifications"): ("WARMBEE_NOTIFICATIONS_PORT", 8005, "/healthz"),
    ("worker", "points"): ("WARMBEE_WORKER_METRICS_PORT", 8012, "/metrics"),
    ("worker", "notifications"): ("WARMBEE_NOTIFICATIONS_WORKER_METRICS_PORT", 8015, "/metrics"),
    ("worker", "notifications-sender"): ("WARMBEE_NOTIFICATIONS_SENDER_METRICS_PORT", 8025, "/metrics"),
}


def probe_url(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The URL that says whether the process started as ``argv`` is up; None for a one-shot command."""
    if env.get("WARMBEE_HEALTHCHECK_URL"):
        return env["WARMBEE_HEALTHCHECK_URL"]
    for words, (variable, default, path) in PROBES.items():
        if any(tuple(argv[i : i + 2]) == words for i in range(len(argv) - 1)):
            return f"http://127.0.0.1:{env.get(variable, default)}{path}"
    return None


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        argv = []
    url = probe_url(argv, os.environ)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - a fixed local URL
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
