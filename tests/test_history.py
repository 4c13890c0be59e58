"""The timeline of the Seminal Works page: links, bibliography keys, order, the figure."""

from __future__ import annotations

import re
from pathlib import Path

from rlhf_course.teaching import history, plots

ROOT = Path(__file__).resolve().parents[1]


def _bib_urls() -> dict[str, str]:
    """Key -> url of every entry in book/references.bib ('' where an entry has no url)."""
    text = (ROOT / "book" / "references.bib").read_text()
    entries = re.split(r"^@", text, flags=re.MULTILINE)[1:]
    urls = {}
    for entry in entries:
        head = re.match(r"(\w+)\{([^,\s]+),", entry)
        if head and head.group(1).lower() != "comment":
            url = re.search(r"^\s*url\s*=\s*\{([^}]*)\}", entry, flags=re.MULTILINE)
            urls[head.group(2)] = url.group(1) if url else ""
    return urls


def test_every_milestone_links_to_its_paper_and_cites_a_known_key():
    urls = _bib_urls()
    for m in history.MILESTONES:
        assert m.url.startswith("https://"), f"{m.key}: {m.url} is not an https link"
        assert m.key in urls, f"{m.key} is not in book/references.bib; add the entry there"
        assert urls[m.key] == m.url, f"{m.key}: the timeline links {m.url}, the bibliography {urls[m.key]}"


def test_milestones_are_in_date_order_and_well_formed():
    dates = [(m.year, m.month) for m in history.MILESTONES]
    assert dates == sorted(dates), "keep MILESTONES in date order"
    assert len({m.key for m in history.MILESTONES}) == len(history.MILESTONES)
    for m in history.MILESTONES:
        assert 1 <= m.month <= 12
        assert m.theme in history.THEMES, f"{m.key}: unknown theme {m.theme!r}"
        assert m.chapter in history.CHAPTERS, f"{m.key}: unknown chapter {m.chapter!r}"
        assert "$" not in m.short + m.title + m.idea, "no LaTeX in plot labels"


def test_the_seminal_works_page_cites_every_milestone():
    page = (ROOT / "book" / "seminal_works.md").read_text()
    cited = {key for group in re.findall(r"\{cite(?::[tp])?\}`([^`]+)`", page) for key in group.split(",")}
    missing = [m.key for m in history.MILESTONES if m.key not in cited]
    assert not missing, f"book/seminal_works.md does not cite {missing}"


def test_timeline_figure_has_one_clickable_point_per_milestone():
    fig = history.timeline_figure()
    points = sum(len(trace.x) for trace in fig.data)
    assert points == len(history.MILESTONES)
    labels = " ".join(text for trace in fig.data for text in trace.text)
    for m in history.MILESTONES:
        assert f'href="{m.url}"' in labels, f"{m.key} has no link on the timeline"
    assert "text/html" in plots.mime_bundle(fig)
