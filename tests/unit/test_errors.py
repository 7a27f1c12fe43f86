"""One table gives every domain error kind its problem status and title (libs/platform/errors.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from libs.platform.errors import PROBLEMS, DomainError

ROOT = Path(__file__).resolve().parents[2]


def _kinds_named_in_code() -> set[tuple[str, str]]:
    """Every ``kind="..."`` passed to an error and every ``kind = "..."`` of a class, in services/ and libs/."""
    found: set[tuple[str, str]] = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("libs/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith(("Error", "Refused")):
                for keyword in node.keywords:
                    if keyword.arg == "kind" and isinstance(keyword.value, ast.Constant):
                        found.add((str(path.relative_to(ROOT)), str(keyword.value.value)))
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    target = item.targets[0] if isinstance(item, ast.Assign) else getattr(item, "target", None)
                    value = getattr(item, "value", None)
                    if isinstance(target, ast.Name) and target.id == "kind" and isinstance(value, ast.Constant):
                        found.add((str(path.relative_to(ROOT)), str(value.value)))
    return found


def test_every_kind_the_code_names_has_a_status_and_a_title() -> None:
    named = _kinds_named_in_code()
    assert len(named) > 20
    missing = sorted((path, kind) for path, kind in named if kind not in PROBLEMS and kind != "http-error")
    assert missing == []


def test_a_kind_outside_the_table_is_a_defect_found_at_once() -> None:
    with pytest.raises(KeyError, match=r"not in libs/platform/errors\.py"):
        DomainError("detail", kind="no-such-kind")


def test_an_error_takes_its_status_and_title_from_the_table() -> None:
    error = DomainError("amount: is more than the rider's available balance", kind="insufficient-points")

    assert (error.status, error.title) == (409, "Not enough points")
