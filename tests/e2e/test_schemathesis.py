"""Schemathesis against each service's OpenAPI document, with a valid token of every role that uses it:
no 5xx, every status and content type documented, every response matching its schema."""

from __future__ import annotations

import subprocess

import pytest

from libs.platform.auth import Role, mint_token
from libs.platform.localstack import ROOT, LocalStack

pytestmark = pytest.mark.e2e

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
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
]


@pytest.mark.parametrize(("service", "role", "sub"), CALLERS, ids=[f"{s}-{r.value}" for s, r, _ in CALLERS])
def test_fuzzed_requests_never_fail_the_server_nor_the_contract(
    stack: LocalStack, service: str, role: Role, sub: str
) -> None:
    port = {
        "events": stack.settings.events_port,
        "points": stack.settings.points_port,
        "redemption": stack.settings.redemption_port,
    }[service]
    token = mint_token(stack.settings, role, sub)
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "schemathesis"),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            "20241101",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stdout[-6000:]
