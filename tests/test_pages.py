"""Book pages and notebooks against their sources: quick text checks, no build, no model.

- The introduction's course map lists the chapters and labs of ``_toc.yml``, in
  the same order, and nothing says "coming" for a page that exists.
- No page or notebook holds an ASCII control character (a ``\\b`` or ``\\v``
  written unescaped in a notebook's JSON turns ``\\beta`` into a backspace and
  "eta").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"

# Pages that are not chapters of the pipeline: the map mentions them in its last line.
NOT_IN_MAP = {"book/introduction", "book/instructors", "book/contributing", "book/references"}


def _toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]


def _course_map() -> str:
    text = (BOOK / "introduction.md").read_text()
    start = text.index("## Course map")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _map_entries() -> list[str]:
    """The numbered items of the course map, in order."""
    return re.findall(r"^\d+\. (.+)$", _course_map(), flags=re.M)


def test_course_map_lists_every_chapter_in_toc_order():
    toc = _toc_files()
    chapters = [f for f in toc if f.startswith("book/") and f not in NOT_IN_MAP]
    entries = _map_entries()
    # item 1 is the introduction itself; each later item opens with its chapter's {doc} link
    mapped = [re.match(r"\*\*\{doc\}`(\w+)`\*\*", entry) for entry in entries[1:]]
    assert all(mapped), f"a course-map item does not start with **{{doc}}`chapter`**: {entries}"
    assert [f"book/{m.group(1)}" for m in mapped] == chapters, (
        "the course map in book/introduction.md and the chapters of _toc.yml differ; "
        "update the map when a chapter is added, removed or moved"
    )


def test_course_map_names_each_chapters_lab():
    toc = _toc_files()
    entries = dict(zip([None] + [re.match(r"\*\*\{doc\}`(\w+)`", e).group(1) for e in _map_entries()[1:]],
                       _map_entries()))
    labs_after = {}
    chapter = "introduction"
    for f in toc:
        if f.startswith("book/"):
            chapter = f.removeprefix("book/")
        elif f.startswith("labs/"):
            labs_after.setdefault(chapter, []).append(f.removeprefix("labs/"))
    # the five-minute lab sits before the first chapter in the toc: it belongs to the introduction
    for chapter, labs in labs_after.items():
        entry = entries[None] if chapter == "introduction" else entries[chapter]
        for lab in labs:
            assert f"{{doc}}`../labs/{lab}`" in entry, f"the course map's entry for {chapter} does not name its lab {lab}"


def test_nothing_is_coming_that_exists():
    """A "coming" that names an existing chapter or lab is stale."""
    titles = {}
    for f in _toc_files():
        path = REPO / f"{f}.md" if (REPO / f"{f}.md").exists() else REPO / f"{f}.ipynb"
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = "".join(json.loads(text)["cells"][0]["source"])
        first = re.search(r"^# (?:Lab: )?(.+)$", text, flags=re.M).group(1)
        titles[f] = re.split(r"[:—(]", first)[0].strip().lower()
    stale = []
    for page in sorted(BOOK.glob("*.md")):
        for line in page.read_text().splitlines():
            for match in re.finditer(r"([\w\- ]+?) (?:chapter|lab)s? \(coming\)|([\w\- ]+?) lab coming", line, re.I):
                name = (match.group(1) or match.group(2)).strip().lower()
                if any(name.endswith(title) or title.endswith(name) for title in titles.values()):
                    stale.append(f"{page.name}: {match.group(0)!r}")
    assert not stale, f"these say 'coming' for pages that exist: {stale}"
    assert "will follow" not in (BOOK / "introduction.md").read_text()


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _texts() -> list[Path]:
    return (sorted(BOOK.glob("*.md")) + sorted((REPO / "labs").glob("*.ipynb"))
            + sorted((REPO / "tests" / "fixtures").glob("*.ipynb")))


@pytest.mark.parametrize("path", _texts(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_control_characters(path: Path):
    """Tab and newline only. In a notebook, check the decoded cell sources too, where an escape went wrong."""
    raw = path.read_text(encoding="utf-8")
    texts = [raw]
    if path.suffix == ".ipynb":
        texts = ["".join(cell["source"]) for cell in json.loads(raw)["cells"]]
    bad = []
    for text in texts:
        for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines(): it splits at \v and \f too
            for match in CONTROL.finditer(line):
                bad.append(f"line {lineno}: {match.group(0)!r} in {line[max(0, match.start() - 20):match.end() + 20]!r}")
    assert not bad, f"{path.relative_to(REPO)} holds control characters (write \\\\beta, not \\beta, in JSON): {bad}"
