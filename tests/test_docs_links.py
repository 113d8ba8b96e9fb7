"""Every relative link in the repository's Markdown pages points at a file that exists, so a page
moved or split (results pages are, as they grow) leaves no reader at a dead link."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SKIPPED_DIRS = {"runs", "node_modules"}  # run artefacts; dot-folders (.venv, .git) too


def _pages() -> list[Path]:
    return [
        page for page in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in SKIPPED_DIRS
                   for part in page.relative_to(ROOT).parts[:-1])
    ]


def _relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


def test_the_link_pattern_finds_relative_links_and_skips_urls() -> None:
    text = "[a](docs/a.md), [b](b.md#part), [c](https://x.org/c.md), [d](mailto:x@y.z)"
    assert _relative_links(text) == ["docs/a.md", "b.md"]


def test_every_relative_link_in_the_markdown_pages_resolves() -> None:
    pages = _pages()
    assert ROOT / "README.md" in pages and len(pages) > 10
    dead = [f"{page.relative_to(ROOT)}: {target}" for page in pages
            for target in _relative_links(page.read_text())
            if not (page.parent / target).exists()]
    assert not dead, "links to missing files:\n" + "\n".join(dead)
