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
            assert f"{{doc}}`../labs/{lab}`" in entry, f"the course map's entry for {chapter} does not name {lab}"


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
                around = line[max(0, match.start() - 20):match.end() + 20]
                bad.append(f"line {lineno}: {match.group(0)!r} in {around!r}")
    assert not bad, f"{path.relative_to(REPO)} holds control characters (write \\\\beta, not \\beta, in JSON): {bad}"


# ----------------------------------------------------------------------------- the Preference Data page


def _preference_page() -> str:
    return (BOOK / "preference_data.md").read_text()


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", cell)]


def test_annotator_table_matches_the_code():
    """The table of the default pool: gold-attribute weights, per-word and stock-phrase biases."""
    from rlhf_course.toyworld import GOLD_WEIGHTS, default_annotators

    lines = _preference_page().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| annotator | weights on"))
    header, rows = lines[start], {}
    for line in lines[start + 2:]:
        match = re.match(r"\| `(\w+)` \|(.+)$", line)
        if not match:
            break
        rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    pool = default_annotators()
    assert set(rows) == {a.name for a in pool}, f"the page's annotators {sorted(rows)} are not the pool's"
    order = re.search(r"weights on ([\w, ]+) \|", header).group(1).split(", ")
    assert set(order) == set(GOLD_WEIGHTS), f"the weights column names {order}, the gold reward {list(GOLD_WEIGHTS)}"
    for annotator in pool:
        weights, per_word, phrase = rows[annotator.name][:3]
        want = [annotator.weights.get(name, 0.0) for name in order]
        assert _numbers(weights)[:4] == want, f"{annotator.name}: the page says {weights}, the code {want}"
        assert ("gold" in weights) == (annotator.weights == GOLD_WEIGHTS), f"{annotator.name}: 'gold weights' is wrong"
        assert _numbers(per_word) == [annotator.length_bias], f"{annotator.name}: per word {per_word}, code differs"
        assert _numbers(phrase) == [annotator.phrase_bias], f"{annotator.name}: stock phrase {phrase}, code differs"


def _accuracy(rows: list[dict]) -> float:
    decided = [r for r in rows if r["gold_margin"] != 0]
    return sum(r["gold_chosen"] > r["gold_rejected"] for r in decided) / len(decided)


def _share_with_more(rows: list[dict], feature) -> float:
    differ = [r for r in rows if feature(r["chosen"]) != feature(r["rejected"])]
    picked = [feature(r["chosen"]) > feature(r["rejected"]) for r in differ]
    return sum(picked) / len(picked)


def test_agreement_and_bias_numbers_match_the_toy_world():
    """Every number of the page's noise and bias paragraphs, recomputed (seconds, no model)."""
    from rlhf_course import toyworld

    page = _preference_page()
    setup = re.search(r"one pair for each of ([\d,]+) training prompts \(seed (\d+)", page)
    n_prompts, seed = int(setup.group(1).replace(",", "")), int(setup.group(2))
    prompts = toyworld.make_prompts("train", n_prompts, seed=seed)

    header = re.search(r"^\| temperature \$\\tau\$ \|(.+)$", page, flags=re.M).group(1)
    temperatures = _numbers(header)
    table = {}
    for label in ("default pool", "`careful` alone"):
        row = re.search(rf"^\| agreement with gold, {re.escape(label)} \|(.+)$", page, flags=re.M).group(1)
        table[label] = _numbers(row)
    computed = {
        "default pool": [_accuracy(toyworld.make_preferences(prompts, toyworld.default_annotators(t), seed=seed))
                         for t in temperatures],
        "`careful` alone": [_accuracy(toyworld.make_preferences(prompts, [toyworld.Annotator("careful", temperature=t)],
                                                                seed=seed)) for t in temperatures],
    }
    for label, values in computed.items():
        assert table[label] == [round(v, 2) for v in values], (
            f"agreement with gold, {label}: the page says {table[label]}, the toy world gives "
            f"{[round(v, 2) for v in values]}; update book/preference_data.md")

    disagreement = int(re.search(r"disagrees with gold on about (\d+)% of pairs", page).group(1))
    assert disagreement == round(100 * (1 - computed["default pool"][temperatures.index(0)]))

    careful = toyworld.make_preferences(prompts, [toyworld.Annotator("careful", temperature=0.5)], seed=seed)
    pool = toyworld.make_preferences(prompts, toyworld.default_annotators(0.5), seed=seed)
    assert [(r["prompt_id"], {r["chosen"], r["rejected"]}) for r in careful] == \
        [(r["prompt_id"], {r["chosen"], r["rejected"]}) for r in pool], "the page says both label the same pairs"

    def length(text: str) -> int:
        return len(toyworld.words(text))

    def phrase(text: str) -> bool:
        return toyworld.STOCK_PHRASE in text

    said = re.search(r"chooses the \*longer\* response in about (\d+)% of them, and the one with the stock phrase "
                     r"in about (\d+)%.*?the same pairs give about (\d+)% and (\d+)%", page, flags=re.S)
    got = [_share_with_more(careful, length), _share_with_more(careful, phrase),
           _share_with_more(pool, length), _share_with_more(pool, phrase)]
    assert [int(x) for x in said.groups()] == [round(100 * g) for g in got], (
        f"the page's length and phrase shares {said.groups()} are not the toy world's "
        f"{[round(100 * g) for g in got]}")
