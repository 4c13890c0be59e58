"""Plotly set-up shared by every lab: figures that show up everywhere.

A lab calls :func:`setup` once, in its first code cell, and then shows figures
with ``fig.show()`` (or by leaving ``fig`` as the last expression of a cell).

Why this module exists
----------------------
Plotly 6 and later show a figure in Jupyter as plotly's own JSON mime type,
``application/vnd.plotly.v1+json``, and nothing else. The book (Jupyter Book 1,
myst-nb) does not know that type: it drops the output with a warning, so the
figure silently disappears from the website (and, with warnings as errors, the
build fails). Colab does not render that type either.

:func:`setup` registers a renderer, ``"rlhf_course"``, whose only output is a
self-contained ``text/html`` fragment: a ``<div>`` plus the script that draws the
figure into it. The book keeps such HTML as it is, and Colab, JupyterLab,
Notebook 7 and VS Code run it. The fragment needs plotly.js on the page, which
comes from one of two places:

* ``"cdn"``: every figure loads plotly.js from the plotly CDN (a few kilobytes of
  HTML per figure, the browser caches the library). Used always in Colab, where
  each output lives in its own frame and must load the library itself, and for
  a hosted website that may use a CDN (``make book ASSETS=cdn``).
* ``"embed"``: :func:`setup` prints plotly.js (about 4 MB) into its own cell
  output once, and every figure of the page uses that copy. Works without any
  network, so it is the default in Jupyter on a laptop, where a learner may be
  offline. A book built this way works offline too, but at 4 MB per lab page.

* ``"site"``: figures carry no plotly.js at all; the page they end up on
  provides it. The website uses this (``make book`` sets
  ``RLHF_COURSE_PLOTLYJS=site``): its Sphinx extension, ``book/_ext/course_site.py``,
  ships one copy of plotly.js in the site's static files and loads it on every
  page with a figure, so the site works offline with no copy per page.

Choose with ``setup(plotlyjs=...)`` or the environment variable
``RLHF_COURSE_PLOTLYJS``; otherwise Colab gets ``"cdn"`` and everything else
``"embed"``.

The renderer never asks plotly to load MathJax: the book page already has its
own MathJax, and a second copy would fight with it. Keep LaTeX out of plot
labels; write "KL" rather than ``$\\mathrm{KL}$``.

It also registers a small layout template, ``"rlhf_course"``, so that every lab
draws with the same fonts, margins and colours, and it silences the progress
bars of library internals (:func:`quiet_libraries`).

    >>> import plotly.graph_objects as go
    >>> from rlhf_course import plots
    >>> plots.setup("cdn")
    'cdn'
    >>> fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    >>> list(plots.mime_bundle(fig))
    ['text/html']
"""

from __future__ import annotations

import os
import sys

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer

RENDERER_NAME = "rlhf_course"
TEMPLATE_NAME = "rlhf_course"

#: The course's trace colours, in the order plotly assigns them: the Okabe-Ito
#: palette, which stays distinguishable with the common forms of colour blindness.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

PLOTLYJS_ENV = "RLHF_COURSE_PLOTLYJS"
PLOTLYJS_MODES = ("cdn", "embed", "site")


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules


class CourseRenderer(MimetypeRenderer):
    """Plotly renderer whose ``text/html`` output the book, Colab and Jupyter display.

    Args:
        plotlyjs: ``"cdn"`` (each figure loads plotly.js from the plotly CDN),
            ``"embed"`` (figures use the copy that :func:`setup` put on the page)
            or ``"site"`` (the page provides plotly.js: the course website).
    """

    def __init__(self, plotlyjs: str = "cdn"):
        if plotlyjs not in PLOTLYJS_MODES:
            raise ValueError(f"plotlyjs must be one of {PLOTLYJS_MODES}, not {plotlyjs!r}")
        self.plotlyjs = plotlyjs

    def to_mimebundle(self, fig_dict: dict) -> dict:
        html = pio.to_html(
            wrap_title(fig_dict),
            include_plotlyjs="cdn" if self.plotlyjs == "cdn" else False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=450,
            config={"displaylogo": False, "responsive": True},
            validate=False,
        )
        return {"text/html": html}


TITLE_WIDTH = 60  # characters of a title line before it is wrapped


def wrap_title(fig_dict: dict, width: int = TITLE_WIDTH) -> dict:
    """``fig_dict`` with a long title broken into lines of at most about ``width`` characters.

    plotly.js never wraps a title: a long one runs off the figure and is cut,
    above all on a phone. A title that already holds a ``<br>`` is left alone.
    """
    title = (fig_dict.get("layout") or {}).get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if not isinstance(text, str) or len(text) <= width or "<br" in text:
        return fig_dict
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    layout = {**fig_dict["layout"], "title": {**(title if isinstance(title, dict) else {}), "text": "<br>".join(lines)}}
    return {**fig_dict, "layout": layout}


def _course_template() -> go.layout.Template:
    """The course's look: white background, readable fonts, Okabe-Ito colours.

    The title sits at the top left of the figure, above a top margin that
    leaves room for two lines of title and for subplot titles (and grows when
    it needs more, ``automargin``); the legend stands to the right of the
    plot, top aligned, so that it never covers the title or the data, however
    many traces.
    """
    template = go.layout.Template()
    template.layout = go.Layout(
        colorway=list(COLORS),
        font=dict(family="Inter, Helvetica, Arial, sans-serif", size=14),
        title=dict(x=0, xanchor="left", xref="paper", y=1, yanchor="top", yref="container", pad=dict(t=12),
                   automargin=True, font=dict(size=16)),
        margin=dict(l=60, r=20, t=90, b=50),
        hovermode="closest",
        legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02),
    )
    return template


def setup(plotlyjs: str | None = None) -> str:
    """Make plotly figures appear in the book, in Colab and in Jupyter.

    Call once per lab, before the first figure; calling again is harmless.

    Args:
        plotlyjs: ``"cdn"``, ``"embed"`` or ``"site"`` (see the module docstring). ``None``
            reads ``RLHF_COURSE_PLOTLYJS``, then picks ``"cdn"`` in Colab and
            ``"embed"`` elsewhere.

    Returns:
        The mode used, ``"cdn"``, ``"embed"`` or ``"site"``.
    """
    mode = plotlyjs or os.environ.get(PLOTLYJS_ENV) or ("cdn" if in_colab() else "embed")
    mode = mode.strip().lower()
    pio.renderers[RENDERER_NAME] = CourseRenderer(plotlyjs=mode)
    pio.renderers.default = RENDERER_NAME
    pio.templates[TEMPLATE_NAME] = _course_template()
    pio.templates.default = f"plotly_white+{TEMPLATE_NAME}"
    if mode == "embed":
        _display_plotlyjs()
    quiet_libraries()
    return mode


#: Libraries whose progress bars, log messages below errors and warnings a lab page does not show.
LIBRARIES = ("transformers", "trl", "accelerate", "peft", "datasets", "huggingface_hub", "torch")


def quiet_libraries() -> None:
    """No progress bars from library internals (loading weights, mapping datasets) and no library chatter.

    The first cell of every lab calls :func:`setup`, so this holds for the
    whole lab, before anything loads a model: a lab's page shows the bars of
    its own long steps and what the learner needs to read, nothing else. The
    libraries' log messages below errors and the warnings they raise about
    themselves (deprecations, experimental APIs) are silenced; a warning that
    the course's own code or the lab's raises still shows.
    (``rlhf_course.core.models.quiet_libraries`` does the same for the stages.)
    """
    import logging
    import warnings

    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=rf"({'|'.join(LIBRARIES)})(\.|$)")
    try:
        import datasets
        import transformers
    except ImportError:  # plotting without the training stack
        return
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _display_plotlyjs() -> None:
    """Put plotly.js on the page once (the output of the cell calling setup)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # plain python: nothing to display into
        return
    if get_ipython() is None:
        return
    from plotly.offline import get_plotlyjs

    display(HTML(f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"))


def mime_bundle(fig: go.Figure) -> dict:
    """The outputs that ``fig.show()`` displays once :func:`setup` has run.

    Handy in tests: ``"text/html" in mime_bundle(fig)`` is what the book needs.
    """
    renderer = pio.renderers[RENDERER_NAME] if RENDERER_NAME in pio.renderers else CourseRenderer()
    return renderer.to_mimebundle(fig.to_dict())
