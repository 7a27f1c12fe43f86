"""Rules files on disk (YAML): read and validated into ``Rules``, with every problem located."""

from __future__ import annotations

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
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesFileError(path, [str(exc)]) from exc
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()]
        raise RulesFileError(path, problems) from exc
