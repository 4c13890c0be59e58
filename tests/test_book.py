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
    (root / "book" / "references.bib").write_text(BIB)
    (root / "_toc.yml").write_text(TOC)
    (root / "index.md").write_text(index)
    nbformat.write(notebook, root / "lab.ipynb")
    return root


def _build(root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["RLHF_COURSE_PLOTLYJS"] = "cdn"  # as `make book` does
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


@pytest.mark.parametrize("mode", ["cdn", "embed"])
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
    assert "cdn.plot.ly/plotly-" in html, "nothing loads plotly.js on the page"
    # The book's MathJax must stay the only one on the page.
    assert "tex-svg" not in html

    index = (root / "_build" / "html" / "index.html").read_text()
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


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.skipif(
    os.environ.get("RLHF_COURSE_SKIP_REAL_BOOK") == "1",
    reason="RLHF_COURSE_SKIP_REAL_BOOK=1: skipping the full website build (every lab executed)",
)
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
