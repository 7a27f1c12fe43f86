"""Rules files on disk (YAML): read and validated into ``Rules``, every problem with its line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from services.points.domain.rules import Rules

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "warmbee-default.v1.yaml"


class RulesFileError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def read_rules_file(path: Path) -> Rules:
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        tree = yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        raise RulesFileError(path, [str(exc)]) from exc
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"line {_line(tree, e['loc'])}: {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise RulesFileError(path, problems) from exc


def _line(node: yaml.Node | None, location: Sequence[int | str]) -> int:
    """The line of the deepest node of ``location`` that exists in the file (a missing key: its parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        if not isinstance(node, yaml.MappingNode):
            break
        child = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        if child is None:
            key = next((k for k, _ in node.value if getattr(k, "value", None) == str(part)), None)
            return key.start_mark.line + 1 if key is not None else line
        node, line = child, child.start_mark.line + 1
    return line
