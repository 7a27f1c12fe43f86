"""Schemathesis against each service's OpenAPI document, with a valid token of every role that uses it:
every check schemathesis has (no 5xx; statuses, content types, headers and bodies as documented; valid
data accepted and invalid data refused; 405 with Allow for undocumented methods; auth enforced; ...) and
every phase, the stateful one (chains of calls along the document's links) included. The exceptions,
each with its reason, are in schemathesis.toml beside this file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from libs.platform.auth import Role, mint_token
from libs.platform.localstack import ROOT, LocalStack

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Test cases per operation and phase. Enough to send NULs, control characters and long strings into every
# field (a NUL in a partner's name was found this way); bounded so that `make test` stays in its time now
# that the points API has some 30 operations: on two cores the file takes 2 min 22 s with three runs at a time
# (3 min 51 s one after another; the same CPU time, 4 min 5 s against 4 min 18 s). `make fuzz` runs it
# with five times as many (WARMBEE_PROPERTY_SCALE=5). Events has one operation, but its cases are batches
# of up to 1,000 events, so fewer of them.
SCALE = float(os.environ.get("WARMBEE_PROPERTY_SCALE", "1"))
MAX_EXAMPLES = {
    service: max(1, round(n * SCALE))
    for service, n in {"events": 20, "points": 35, "redemption": 30, "pages": 30}.items()
}
CALLERS = [  # (service, role, sub)
    ("events", Role.SOURCE, "volunteer-platform"),
    ("events", Role.OPERATOR, "ops-fuzz"),
    ("events", Role.RIDER, "rider-fuzz"),
    ("points", Role.RIDER, "rider-fuzz"),
    ("points", Role.OPERATOR, "ops-fuzz"),
    ("points", Role.SOURCE, "volunteer-platform"),
    ("redemption", Role.RIDER, "rider-fuzz"),
    ("redemption", Role.PARTNER, "partner-fuzz"),
    ("redemption", Role.OPERATOR, "ops-fuzz"),
    ("pages", Role.RIDER, "rider-fuzz"),  # the pages need no token; one is sent as a browser would not
]


# The callers' runs go side by side, this many at a time: a Schemathesis process waits on the services'
# answers for much of its time, so two cores carry more than one run at once. Each test waits for its own
# caller's run and reports it.
PARALLEL = 3


def _run(stack: LocalStack, service: str, role: Role, sub: str) -> subprocess.CompletedProcess[str]:
    port = {
        "events": stack.settings.events_port,
        "points": stack.settings.points_port,
        "redemption": stack.settings.redemption_port,
        "pages": stack.settings.pages_port,
    }[service]
    token = mint_token(stack.settings, role, sub)
    return subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES[service]),
            "--seed",
            "20241101",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300 * SCALE * PARALLEL,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, stack: LocalStack
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    chosen = {  # the callers this session runs (-k may choose some)
        item.callspec.id
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == TEST_NAME
    }
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        yield {
            f"{s}-{r.value}": pool.submit(_run, stack, s, r, sub) for s, r, sub in CALLERS if f"{s}-{r.value}" in chosen
        }


TEST_NAME = "test_fuzzed_requests_never_fail_the_server_nor_the_contract"


@pytest.mark.parametrize(("service", "role", "sub"), CALLERS, ids=[f"{s}-{r.value}" for s, r, _ in CALLERS])
def test_fuzzed_requests_never_fail_the_server_nor_the_contract(
    runs: dict[str, Future[subprocess.CompletedProcess[str]]], service: str, role: Role, sub: str
) -> None:
    result = runs[f"{service}-{role.value}"].result()
    assert result.returncode == 0, result.stdout[-6000:]
