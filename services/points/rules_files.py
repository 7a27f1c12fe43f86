"""Rules files (YAML), from disk or from a request body: read and validated into ``Rules``, every
problem with its line, column and path. The CLI and the points API both read rules through here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from libs.platform.errors import DomainError
from services.points.domain.rules import Rules

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "warmbee-default.v1.yaml"


@dataclass(frozen=True, slots=True)
class RulesProblem:
    """One thing to fix in a rules file: where (1-based line and column, and the dotted path of the
    field, empty for the file itself) and what."""

    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path or '(file)'}: {self.message}"


class RulesFileError(DomainError):
    """A rules file that is not valid: every problem, each with where it is (``errors`` in the problem)."""

    kind = "invalid-rules"

    def __init__(self, origin: str | Path, problems: list[RulesProblem]) -> None:
        super().__init__(
            f"{len(problems)} problem(s): " + "; ".join(str(p) for p in problems),
            errors=[{"line": p.line, "column": p.column, "path": p.path, "message": p.message} for p in problems],
        )
        self.origin = str(origin)
        self.problems = problems


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def rules_text(body: bytes, content_type: str | None) -> str:
    """The text of a rules file sent as a request body: YAML in UTF-8."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise DomainError(
            f"Content-Type: {media or 'missing'} is not accepted; send the rules file as application/yaml",
            kind="unsupported-media-type",
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise RulesFileError(
            "body", [RulesProblem(line, 1, "", f"is not UTF-8 (byte {exc.start}); send UTF-8")]
        ) from exc


def read_rules_file(path: Path) -> Rules:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(path, [RulesProblem(1, 1, "", str(exc))]) from exc
    return parse_rules(text, path)


def parse_rules(text: str, origin: str | Path = "rules") -> Rules:
    """The rules of a YAML text, or ``RulesFileError`` with every problem found. Aliases are refused
    before anything is built from the text, so a billion-laughs file costs one pass over its events."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RulesFileError(origin, [RulesProblem(line, 1, "", "a NUL character is not allowed; send UTF-8 text")])
    try:
        _refuse_aliases(text, origin)
        document = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RulesFileError(origin, [_yaml_problem(exc)]) from exc
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        message = f"must be a mapping of rules_id, version, effective_from, timezone and categories, got {found}"
        raise RulesFileError(origin, [RulesProblem(1, 1, "", message)])
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        problems = [_located(tree, e["loc"], e["msg"]) for e in exc.errors()]
        raise RulesFileError(origin, problems) from exc


def _refuse_aliases(text: str, origin: str | Path) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            line, column = _position(event.start_mark)
            message = f"the alias *{event.anchor} is not allowed; write the value out in full"
            raise RulesFileError(origin, [RulesProblem(line, column, "", message)])


def _yaml_problem(exc: yaml.YAMLError) -> RulesProblem:
    line, column = _position(getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None))
    what = getattr(exc, "problem", None) or str(exc)
    return RulesProblem(line, column, "", f"is not valid YAML: {what}")


def _located(node: yaml.Node | None, location: Sequence[int | str], message: str) -> RulesProblem:
    """The problem at the deepest node of ``location`` that exists in the file (a missing key: its
    parent's key)."""
    path = ".".join(str(p) for p in location)
    mark = node.start_mark if node is not None else None
    for part in location:
        if not isinstance(node, yaml.MappingNode):
            break
        pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if pair is None:
            break
        node = pair[1]
        mark = node.start_mark
    line, column = _position(mark)
    return RulesProblem(line, column, path, message)


def _position(mark: Any) -> tuple[int, int]:
    """1-based line and column (YAML's marks count from 0)."""
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
