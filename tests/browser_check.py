"""The website as a reader sees it: every page opened in headless Chromium with the network blocked.

:func:`check_site` is the logic of the browser test of tests/test_book.py. It
works on any built site (``_build/html``), so the test runs it both on the real
website (``built_site``, every lab executed) and on a small book it builds in
seconds. It returns a list of problems, one line each, empty when the site is
fine:

* a JavaScript console error, an uncaught exception, or a failed request (every
  request that is not for a local file is aborted: the site must work offline);
* a plotly figure that drew no data; display math that MathJax did not typeset,
  or typeset as an error; an equation, a table or a figure that runs over the
  right edge of the text column (at desktop width);
* an internal link (``href``) whose file, or whose ``#anchor`` in that file, does
  not exist;
* launch buttons (Colab, Binder) on a page that is not a lab notebook, or a lab
  page whose buttons are missing or open another notebook;
* cell outputs that hold a Python warning, raw progress-bar text, a Trainer log
  table or an absolute home path.

It also saves screenshots of a few pages at desktop and phone widths (into
``<build>/screenshots``, beside ``html``), for a person to look at, and fails
on any of those pages that is wider than the screen.

Chromium comes from Debian's packages (``apt-get install chromium``), driven by
Playwright for Python; the browsers that Playwright downloads are not used.

    python tests/browser_check.py _build/html
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_PAGES = ("index.html", "book/introduction.html", "book/ppo.html", "book/definitions.html",
                    "labs/what_are_preferences.html", "labs/policy_gradients.html")
COLAB = "https://colab.research.google.com/github/"
BINDER = "https://mybinder.org/"

# What a page's outputs must not hold, by the name a failure gives it.
OUTPUT_PROBLEMS = {
    "a Python warning": re.compile(r"\b\w*Warning: |warnings\.warn\("),
    "raw progress-bar text": re.compile(r"\d+%\|[^|\n]*\||\d+(?:\.\d+)?(?:it|s)/(?:s|it)\]"),
    "a Trainer log table": re.compile(r"\bStep\s+Training Loss\b|\bEpoch\s+Training Loss\b"),
    "an absolute home path": re.compile(r"(?<![\w.])(?:/root/|/home/\w+/|/Users/\w+/|[A-Z]:\\Users\\)"
                                        r"|/tmp/pytest-of-"),
}

PAGE_STATE_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
  const figures = Array.from(document.querySelectorAll('.plotly-graph-div')).map((div) => ({
    id: div.id,
    traces: (div._fullData || []).length,
    drawn: div.querySelectorAll('svg.main-svg').length > 0
           && div.querySelectorAll('.trace, .hm image, .imagelayer image, .pielayer .slice').length > 0,
  }));
  const maths = Array.from(document.querySelectorAll('div.math'));
  const article = document.querySelector('.bd-article');
  const edge = article ? article.getBoundingClientRect().right + 2 : Infinity;
  // an element that a scrolling box holds (overflow auto/scroll/hidden) inside the column is not over the edge
  const contained = (e) => {
    for (let box = e; box && box !== article; box = box.parentElement) {
      if (box !== e && getComputedStyle(box).overflowX !== 'visible' && box.getBoundingClientRect().right <= edge) {
        return true;
      }
    }
    return false;
  };
  const overflowing = Array.from(document.querySelectorAll(
      '.bd-article div.math, .bd-article mjx-container, .bd-article table, .bd-article .plotly-graph-div'))
    .filter((e) => e.getBoundingClientRect().right > edge && !contained(e))
    .map((e) => `${e.tagName.toLowerCase()}.${e.className}: ${e.textContent.trim().slice(0, 50)}`);
  return {
    overflowing,
    figures,
    mathjax: !!(window.MathJax && MathJax.version),
    displayMath: maths.length,
    untypeset: maths.filter((m) => !m.querySelector('mjx-container')).map((m) => m.textContent.slice(0, 60)),
    mathErrors: Array.from(document.querySelectorAll('mjx-merror')).map((e) => e.textContent.slice(0, 80)),
    outputs: Array.from(document.querySelectorAll('.cell_output')).map((o) => o.innerText),
  };
}
"""


class _Page(HTMLParser):
    """The ids and the hrefs of one HTML file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag in ("a", "link") and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def _parse(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        parser = _Page()
        parser.feed(path.read_text(errors="replace"))
        cache[path] = parser
    return cache[path]


def pages(html: Path) -> list[Path]:
    """Every page of the site (not the generated search and index pages' assets)."""
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


def broken_links(html: Path) -> list[str]:
    """Internal hrefs whose file or anchor is missing."""
    cache: dict[Path, _Page] = {}
    problems = []
    for page in pages(html):
        for href in _parse(page, cache).hrefs:
            parsed = urlparse(href)
            if parsed.scheme or href.startswith(("//", "mailto:")):
                continue
            path, fragment = unquote(parsed.path), parsed.fragment
            target = (page.parent / path).resolve() if path else page
            name = page.relative_to(html)
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{name}: link {href!r} points to a missing file")
            elif fragment and target.suffix == ".html" and unquote(fragment) not in _parse(target, cache).ids:
                problems.append(f"{name}: link {href!r} points to a missing anchor")
    return problems


def launch_problems(html: Path) -> list[str]:
    """Launch buttons on lab notebook pages only, each opening the page's own notebook."""
    problems = []
    for page in pages(html):
        name = page.relative_to(html).with_suffix("").as_posix()
        text = page.read_text(errors="replace")
        links = set(re.findall(r'href="(https://(?:colab\.research\.google\.com|mybinder\.org)/[^"]+)"', text))
        sources = html / "_sources"  # a MyST page that runs code leaves an .ipynb there too, beside its .md
        notebook = (sources / f"{name}.ipynb").exists() and not (sources / f"{name}.md").exists()
        if not notebook:
            if links:
                problems.append(f"{name}: launch buttons on a page that is not a notebook: {sorted(links)}")
            continue
        own = f"{name}.ipynb"
        colab = [link for link in links if link.startswith(COLAB)]
        if not colab:
            problems.append(f"{name}: a lab page without an 'open in Colab' button")
        for link in links:
            target = link.split("?urlpath=")[-1] if link.startswith(BINDER) else link
            if not unquote(target).rstrip("/").endswith(own):
                problems.append(f"{name}: a launch button opens {link}, not {own}")
    return problems


def output_problems(name: str, outputs: list[str]) -> list[str]:
    """The output texts of one page against :data:`OUTPUT_PROBLEMS`."""
    problems = []
    for i, text in enumerate(outputs):
        for what, pattern in OUTPUT_PROBLEMS.items():
            match = pattern.search(text)
            if match:
                start = max(0, match.start() - 60)
                excerpt = text[start:match.end() + 60].replace("\n", " | ")
                problems.append(f"{name}: output {i + 1} holds {what}: ...{excerpt}...")
    return problems


def _open(page, url: str) -> dict:
    """Load ``url`` and return its state (:data:`PAGE_STATE_JS`), following a redirect page (the site's root)."""
    from playwright.sync_api import Error

    page.goto(url, wait_until="load")
    for _ in range(3):
        try:
            return page.evaluate(PAGE_STATE_JS)
        except Error as err:
            if "context was destroyed" not in str(err):
                raise
            page.wait_for_load_state("load")
    return page.evaluate(PAGE_STATE_JS)


def browser_problems(html: Path, screenshots: Path | None = None, timeout_ms: int = 30_000) -> list[str]:
    """Open every page in Chromium with the network blocked; see the module docstring."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=DESKTOP)
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                          else route.abort())
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            current = {"name": ""}
            page.on("console", lambda msg: msg.type == "error" and problems.append(
                f"{current['name']}: console error: {msg.text[:300]}"))
            page.on("pageerror", lambda err: problems.append(f"{current['name']}: uncaught exception: {err}"[:400]))
            # A local file whose load was cut short by the next navigation (net::ERR_ABORTED) is no fault of
            # the page; a blocked request fails with net::ERR_FAILED.
            page.on("requestfailed", lambda req: None if (req.url.startswith("file:") and "ERR_ABORTED" in
                                                          str(req.failure)) else problems.append(
                f"{current['name']}: request failed ({req.failure}): {req.url[:200]}"))
            for path in pages(html):
                name = current["name"] = path.relative_to(html).as_posix()
                state = _open(page, path.as_uri())
                for figure in state["figures"]:
                    if not (figure["traces"] and figure["drawn"]):
                        problems.append(f"{name}: plotly figure {figure['id']} drew no data")
                if state["displayMath"] and not state["mathjax"]:
                    problems.append(f"{name}: display math but no MathJax on the page")
                problems += [f"{name}: display math not typeset: {text!r}" for text in state["untypeset"][:3]]
                problems += [f"{name}: math typeset as an error: {text!r}" for text in state["mathErrors"][:3]]
                problems += [f"{name}: runs over the right edge of the text column: {what}"
                             for what in state["overflowing"][:3]]
                problems += output_problems(name, state["outputs"])
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                for name in SCREENSHOT_PAGES:
                    if not (html / name).exists():
                        continue
                    current["name"] = name
                    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                        page.set_viewport_size(viewport)
                        _open(page, (html / name).as_uri())
                        width = page.evaluate("() => document.documentElement.scrollWidth")
                        if width > viewport["width"] + 1:
                            problems.append(f"{name}: {width} px wide, wider than the {label} screen "
                                            f"({viewport['width']} px)")
                        shot = screenshots / f"{name.replace('/', '__').removesuffix('.html')}-{label}.png"
                        page.screenshot(path=str(shot), full_page=False)
                    page.set_viewport_size(DESKTOP)
        finally:
            browser.close()
    return problems


def check_site(html: Path, screenshots: Path | None = None) -> list[str]:
    """Every problem a reader would meet in the site at ``html``; screenshots go to ``screenshots``."""
    html = Path(html)
    return broken_links(html) + launch_problems(html) + browser_problems(html, screenshots)


if __name__ == "__main__":
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html").resolve()
    found = check_site(site, site.parent / "screenshots")
    print("\n".join(found) or "no problem found")
    print(f"{len(found)} problems; screenshots in {site.parent / 'screenshots'}")
    sys.exit(1 if found else 0)
