"""The README and docs/: a README a newcomer reads in one go, a map of every page, and no dead link.

Links that leave the repository (``../shared/...``, the programme's own documents beside the checkout)
are not checked: a clean clone need not have them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def links(page: Path) -> list[tuple[int, str]]:
    """Relative links of a page outside its code blocks, with their line numbers."""
    found, in_code = [], False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            for match in LINK.finditer(line):
                target = match.group(1) or match.group(2)
                if not re.match(r"[a-z]+:", target):
                    found.append((number, target))
    return found


def dead_links(page: Path) -> list[str]:
    dead = []
    for number, target in links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT):
            continue
        if not resolved.exists():
            dead.append(f"{page.name}:{number}: {target} does not exist")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            dead.append(f"{page.name}:{number}: {target} names no heading of {resolved.name}")
    return dead


def test_the_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert dead_links(page) == []


def test_the_readme_maps_every_docs_page():
    mapped = {target.partition("#")[0] for _, target in links(README)}
    assert {f"docs/{page.name}" for page in PAGES} <= mapped


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# A page\n\n## Its part\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#its-part) [gone](c.md) [no heading](a.md#elsewhere)\n```\n[in code](x.md)\n```\n")
    assert dead_links(page) == ["b.md:1: c.md does not exist", "b.md:1: a.md#elsewhere names no heading of a.md"]
