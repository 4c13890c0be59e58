"""Website tests: the book configuration builds, keeps plotly figures, fails loudly.

Each test builds a throwaway book in a temporary folder with the repository's
own ``_config.yml`` (so that the real settings are what is tested: executed
notebooks, warnings as errors, extensions, bibliography) and a tiny table of
contents. They take seconds and use no model.

The full website, with every lab executed, is built by ``make book``; see
``test_real_book_builds`` at the end for the opt-in version inside pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[1]

# jupyter-book's command line, run by the python that runs the tests (the
# `jupyter-book` script is not always on PATH, e.g. in a non-activated venv).
JUPYTER_BOOK = [
    sys.executable,
    "-c",
    "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; sys.exit(main())",
]
# The flags of `make book`.
BUILD_FLAGS = ["--warningiserror", "--nitpick", "--keep-going"]

INDEX_MD = """\
# A tiny book

Made by `tests/test_book.py`. It cites {cite}`testbook2026entry` and has math, $r_\\phi(x, y)$.

```{bibliography}
:filter: docname in docnames
```
"""

BIB = """\
@article{testbook2026entry,
  title   = {An Entry That Only the Book Tests Cite},
  author  = {Tester, Ada},
  journal = {Journal of Throwaway Books},
  year    = {2026}
}
"""

TOC = """\
format: jb-book
root: index
chapters:
  - file: lab
"""


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A lab")] + [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def _make_book(root: Path, notebook: nbformat.NotebookNode, index: str = INDEX_MD) -> Path:
    """Write a two-page book (index.md, lab.ipynb) that uses the real _config.yml."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    for folder in ("_ext", "_static"):  # the course's Sphinx extension and its CSS (book/_ext/course_site.py)
        shutil.copytree(REPO / "book" / folder, root / "book" / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "book" / "references.bib").write_text(BIB)
    (root / "_toc.yml").write_text(TOC)
    (root / "index.md").write_text(index)
    nbformat.write(notebook, root / "lab.ipynb")
    return root


def _build(root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["RLHF_COURSE_PLOTLYJS"] = "site"  # as `make book` does: the site ships plotly.js, the figures do not
    return subprocess.run(
        [*JUPYTER_BOOK, "build", str(root), *BUILD_FLAGS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _log(result: subprocess.CompletedProcess) -> str:
    return f"exit code {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"


PLOT_CELLS = (
    "from rlhf_course.teaching import plots\nplots.setup()",
    textwrap.dedent(
        """\
        import plotly.graph_objects as go
        fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.1, 0.5, 0.4], name="gold reward"))
        fig.update_layout(title="a figure the book must keep")
        fig.show()
        """
    ),
)


@pytest.fixture
def plotly_defaults():
    """Restore plotly's global renderer and template after a test changes them."""
    import plotly.io as pio

    renderer, template = pio.renderers.default, pio.templates.default
    yield
    pio.renderers.default, pio.templates.default = renderer, template


@pytest.mark.parametrize("mode", ["cdn", "embed", "site"])
def test_setup_gives_figures_html_the_book_keeps(mode, monkeypatch, plotly_defaults):
    import plotly.graph_objects as go

    from rlhf_course.teaching import plots

    monkeypatch.setenv(plots.PLOTLYJS_ENV, mode)
    assert plots.setup() == mode
    bundle = plots.mime_bundle(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))
    assert list(bundle) == ["text/html"], "the book drops every mime type but text/html"
    html = bundle["text/html"]
    assert "plotly-graph-div" in html and "Plotly.newPlot" in html
    assert ("cdn.plot.ly/plotly-" in html) == (mode == "cdn")
    assert "libs/mathjax" not in html.lower(), "a second MathJax would fight with the book's"


def test_setup_rejects_an_unknown_mode(plotly_defaults):
    from rlhf_course.teaching import plots

    with pytest.raises(ValueError, match="cdn"):
        plots.setup("inline")


def test_plotly_figure_appears_in_the_html(tmp_path):
    root = _make_book(tmp_path / "book", _notebook(*PLOT_CELLS))
    result = _build(root)
    assert result.returncode == 0, _log(result)

    html = (root / "_build" / "html" / "lab.html").read_text()
    assert 'class="plotly-graph-div"' in html, "the plotly figure div is missing from the page"
    assert "Plotly.newPlot" in html, "the figure is in the page but nothing draws it"
    assert "a figure the book must keep" in html
    assert '<script src="_static/plotly.min.js' in html, "nothing loads plotly.js on the page"
    assert "cdn.plot.ly" not in html, "the offline site loads plotly.js from a CDN"
    static = root / "_build" / "html" / "_static"
    assert (static / "plotly.min.js").stat().st_size > 1_000_000, "the site holds no copy of plotly.js"
    # The book's MathJax must stay the only one on the page, and come from the site itself.
    assert "tex-svg" not in html

    index = (root / "_build" / "html" / "index.html").read_text()
    assert 'src="_static/mathjax/tex-mml-chtml.js' in index, "the page with math does not load the site's MathJax"
    assert (static / "mathjax" / "tex-mml-chtml.js").exists() and not (static / "mathjax" / "sre").exists()
    assert "Tester" in index, "the bibliography (book/references.bib) was not rendered"
    colab = "https://colab.research.google.com/github/rlhf-course/rlhf-course/blob/main/lab.ipynb"
    assert colab in html, "the lab has no 'open in Colab' launch button"


def test_failing_notebook_fails_the_build(tmp_path):
    nb = _notebook("x = 1", "raise RuntimeError('this lab is broken on purpose')")
    root = _make_book(tmp_path / "book", nb)
    result = _build(root)
    assert result.returncode != 0, "a notebook whose cell raises must fail the build\n" + _log(result)
    assert "this lab is broken on purpose" in result.stdout + result.stderr


def test_broken_reference_fails_the_build(tmp_path):
    index = INDEX_MD + "\nSee {ref}`a-label-that-does-not-exist`.\n"
    root = _make_book(tmp_path / "book", _notebook("x = 1"), index=index)
    result = _build(root)
    assert result.returncode != 0, "a warning (broken reference) must fail the build\n" + _log(result)
    assert "a-label-that-does-not-exist" in result.stdout + result.stderr


def test_toc_lists_the_course_pages():
    """Every page named in _toc.yml exists (as .md or .ipynb) and the root comes first."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    assert files[0] == "book/introduction"
    missing = [f for f in files if not any((REPO / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"pages listed in _toc.yml but not in the repository: {missing}"


def _chromium_or_skip() -> None:
    """Skip where Debian's Chromium or Playwright is missing, except in CI, which installs both (.ci/run)."""
    from browser_check import CHROMIUM

    missing = [what for what, ok in (("chromium (apt-get install chromium)", CHROMIUM.exists()),
                                     ("playwright (pip install playwright)", _importable("playwright")))
               if not ok]
    if missing and os.environ.get("CI"):
        pytest.fail(f"the browser test needs {' and '.join(missing)}; .ci/run installs them")
    if missing:
        pytest.skip(f"the browser test needs {' and '.join(missing)}")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


WIDGET_CELL = "import ipywidgets\nipywidgets.IntSlider(description='a widget')"
DISPLAY_MATH = "\n$$\nL(\\theta) = -\\log \\sigma\\big(r(x, y_w) - r(x, y_l)\\big)\n$$\n"


def test_small_site_works_offline_in_a_browser(tmp_path):
    """The browser check of the real site (tests/browser_check.py) on a two-page book built in seconds:
    no network, figures drawn, math typeset, links resolve, launch buttons on the notebook only, a widget
    replaced by a note that says why."""
    _chromium_or_skip()
    from browser_check import check_site

    root = _make_book(tmp_path / "book", _notebook(*PLOT_CELLS, WIDGET_CELL), index=INDEX_MD + DISPLAY_MATH)
    result = _build(root)
    assert result.returncode == 0, _log(result)
    html = root / "_build" / "html"
    lab = (html / "lab.html").read_text()
    assert "application/vnd.jupyter.widget-view+json" not in lab and "course-widget-fallback" in lab, (
        "the widget must give way to a note that says why it is missing")
    assert not re.findall(r'<script[^>]* src="https?://[^"]*"', lab), "a script from the network on the page"
    problems = check_site(html, screenshots=root / "_build" / "screenshots")
    assert not problems, "\n".join(problems)
    assert sorted(p.name for p in (root / "_build" / "screenshots").glob("index-*.png")) == [
        "index-desktop.png", "index-phone.png"]


def test_browser_check_finds_what_a_reader_must_not_see():
    """The output rules of the browser check catch each thing it looks for, and pass clean text."""
    from browser_check import output_problems

    bad = {
        "a Python warning": "/x/trainer.py:12: UserWarning: something was deprecated",
        "raw progress-bar text": "Map:  50%|█████     | 5/10 [00:01<00:01,  4.1 examples/s]",
        "a Trainer log table": "Step\tTraining Loss\n5\t0.693100",
        "an absolute home path": "Pretrained the tiny base model in 3 s; cached at /root/.cache/rlhf_course/tiny",
    }
    for what, text in bad.items():
        found = output_problems("page.html", [text])
        assert found and what in found[0], (what, found)
    assert not output_problems("page.html", ["gold reward 0.41 -> 0.63 (+0.22); step 40: loss 0.000000",
                                            "saved to runs/labs/ppo/final"])


def test_launch_button_rules(tmp_path):
    """Launch buttons: a lab page must have them, for its own notebook; a page from Markdown must not."""
    from browser_check import launch_problems

    html = tmp_path / "html"
    (html / "_sources" / "labs").mkdir(parents=True)
    (html / "_sources" / "book").mkdir(parents=True)
    (html / "labs").mkdir()
    (html / "book").mkdir()
    (html / "_sources" / "labs" / "a.ipynb").write_text("{}")
    (html / "_sources" / "book" / "b.md").write_text("# b")
    (html / "_sources" / "book" / "b.ipynb").write_text("{}")  # a MyST page that executes code
    colab = "https://colab.research.google.com/github/org/repo/blob/main/"
    (html / "labs" / "a.html").write_text(f'<a href="{colab}labs/a.ipynb">Colab</a>')
    (html / "book" / "b.html").write_text("<p>no buttons</p>")
    assert launch_problems(html) == []
    (html / "labs" / "a.html").write_text(f'<a href="{colab}labs/other.ipynb">Colab</a>')
    (html / "book" / "b.html").write_text(f'<a href="{colab}book/b.md">Colab</a>')
    found = launch_problems(html)
    assert any("labs/a" in p and "not labs/a.ipynb" in p for p in found), found
    assert any("book/b" in p and "not a notebook" in p for p in found), found


# The full website, every lab executed (the built_site fixture): slow; make seeds skips it.
REAL_BOOK = pytest.mark.skipif(
    os.environ.get("RLHF_COURSE_SKIP_REAL_BOOK") == "1",
    reason="RLHF_COURSE_SKIP_REAL_BOOK=1: skipping the full website build (every lab executed)",
)


@pytest.mark.slow
@pytest.mark.book
@REAL_BOOK
def test_real_book_builds(built_site):
    """The website as `make book` builds it: every lab executed without an error,
    warnings as errors, and every lab page shows its plotly figures. (The labs'
    outcomes are asserted from this same execution in tests/test_notebooks.py.)"""
    root, result = built_site.root, built_site.result
    errors = built_site.lab_errors()
    assert not errors, "labs failed (their executed copies are in " + str(root / "labs") + "):\n" + "\n\n".join(
        f"--- {lab} ---\n{error}" for lab, error in errors.items())
    assert result.returncode == 0, _log(result)
    assert (root / "_build" / "html" / "index.html").exists()
    for lab in sorted((REPO / "labs").glob("*.ipynb")):
        page = root / "_build" / "html" / "labs" / f"{lab.stem}.html"
        assert page.exists(), f"{lab.name} has no page in the website; add it to _toc.yml"
        assert "plotly-graph-div" in page.read_text(), f"{page.name} shows no plotly figure"
    timeline = root / "_build" / "html" / "book" / "seminal_works.html"
    assert "plotly-graph-div" in timeline.read_text(), "the Seminal Works timeline figure is missing"


@pytest.mark.slow
@pytest.mark.book
@REAL_BOOK
def test_real_site_in_a_browser(built_site):
    """The website as a reader sees it, every page in Chromium with the network blocked (tests/browser_check.py).
    Screenshots of a few pages, at desktop and phone widths, go to _build/screenshots of the checkout."""
    _chromium_or_skip()
    from browser_check import check_site

    assert built_site.result.returncode == 0, _log(built_site.result)
    screenshots = REPO / "_build" / "screenshots"
    problems = check_site(built_site.root / "_build" / "html", screenshots=screenshots)
    assert not problems, f"{len(problems)} problems a reader would meet:\n" + "\n".join(problems[:200])
    assert list(screenshots.glob("*-phone.png")), "no screenshot was saved"
