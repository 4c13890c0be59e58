"""Sphinx extension of the course website: a site that works offline, and the fixes the themes need.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). What it does:

* **One copy of each library, in the site's static files.** The site carries
  plotly.js (from the installed ``plotly`` package) as ``_static/plotly.min.js``
  and MathJax 3 (the ``es5`` bundle of the PyPI package ``django-static-mathjax``,
  which has no dependency) under ``_static/mathjax/``. Every page with a plotly
  figure loads the one plotly.js; every page loads the one MathJax. The labs
  draw their figures with ``RLHF_COURSE_PLOTLYJS=site`` (``rlhf_course.teaching.plots``),
  which puts no copy of plotly.js in the outputs, so ``_build/html`` works from
  the disk with no network. ``RLHF_COURSE_ASSETS=cdn`` builds a site for
  hosting that loads MathJax from its CDN instead (then build the labs with
  ``RLHF_COURSE_PLOTLYJS=cdn`` as well).
* **Widgets say why they are missing.** An ipywidgets view needs a running
  kernel; on a static page it is replaced by a note that says so, and where to
  run the lab. A tqdm progress bar (a widget in Jupyter) is dropped: it was
  progress, not content.
* **Launch buttons on lab notebooks only.** A MyST page with executed code
  (``book/seminal_works.md``) counts as a notebook for sphinx-book-theme, which
  gives it Colab and Binder buttons that cannot open a ``.md`` file.
* **No script twice.** sphinx-thebe adds its inline configuration twice, which
  raises "Identifier 'THEBE_JS_URL' has already been declared" on every page.
* **Function names link to their source.** On the Definitions page, every
  ``rlhf_course.<module>.<name>`` literal links to a page of the module's
  source (``_modules/...``, generated here), at the function's first line.
* ``book/_static/course.css``: wide equations and tables scroll inside their
  column instead of overflowing or being clipped; one search field.
  ``book/_static/course.js``: on a phone, a figure's legend goes below the plot
  and its title is wrapped to the width.
* **No console error on a first visit**: the theme's light/dark mode defaults to
  "auto" (pydata-sphinx-theme logs an error when it has no default).
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import posixpath
import shutil
from pathlib import Path

from docutils import nodes

ASSETS_ENV = "RLHF_COURSE_ASSETS"
STATIC = Path(__file__).resolve().parents[1] / "_static"
MATHJAX_ENTRY = "tex-mml-chtml.js"
PLOTLY_JS = "plotly.min.js"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# MathJax's es5 folder less what the course never loads: other bundles and the speech engine (14 of its 24 MB).
MATHJAX_SKIP = ("sre", "mml-chtml.js", "mml-svg.js", "tex-chtml-full-speech.js", "tex-chtml-full.js",
                "tex-mml-svg.js", "tex-svg-full.js", "tex-svg.js", "node-main.js", "svg", "svg.js")
DEFINITIONS = "book/definitions"
SOURCE_PAGES = "_modules"
WIDGET_NOTE = (
    '<div class="admonition note course-widget-fallback">'
    '<p class="admonition-title">An interactive widget was here</p>'
    "<p>This output is an ipywidgets control. It needs a running Python kernel, so a static web page cannot "
    "show it. Open this lab in Colab or Jupyter (the rocket button at the top of the page, or the notebook "
    "in <code>labs/</code>) to use it; the rest of this page was computed without it.</p></div>"
)


def offline() -> bool:
    """True unless ``RLHF_COURSE_ASSETS=cdn`` asks for a site that loads MathJax from its CDN."""
    return os.environ.get(ASSETS_ENV, "local").strip().lower() != "cdn"


def mathjax_dir() -> Path:
    """MathJax 3's ``es5`` folder, from the ``django-static-mathjax`` package (import name ``mathjax``)."""
    try:
        import mathjax
    except ImportError as err:
        raise RuntimeError("The offline website needs MathJax: pip install -c constraints.txt -e '.[book]' "
                           f"(package django-static-mathjax), or build with {ASSETS_ENV}=cdn") from err
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def plotly_js() -> Path:
    """plotly.js as the installed plotly package ships it (the version its figures are made for)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / PLOTLY_JS


def config_inited(app, config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    # pydata-sphinx-theme logs "Got invalid theme mode" as a console error on a reader's first page unless the
    # light/dark mode has a default.
    config.html_context = {"default_mode": "auto", **config.html_context}
    if offline():
        config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"


def builder_inited(app) -> None:
    if app.builder.format != "html":
        return
    app.add_css_file("course.css")
    if offline():
        mathjax_dir()  # fail at the start of the build, not after it, if MathJax is missing


def widget_state(env, docname: str) -> dict:
    """The saved ipywidgets models of a notebook page, by model id (empty if it saved none)."""
    import json

    try:
        from myst_nb.sphinx_ import NbMetadataCollector

        _, attributes = NbMetadataCollector.get_js_files(env, docname)["ipywidgets_state"]
        return json.loads(attributes["body"]).get("state", {})
    except (ImportError, KeyError, TypeError, ValueError):
        return {}


def is_progress_bar(model_id: str, state: dict) -> bool:
    """True for a tqdm bar in a notebook: a box that holds a progress widget."""
    model = state.get(model_id, {})
    children = model.get("state", {}).get("children", [])
    return any(state.get(str(child).removeprefix("IPY_MODEL_"), {}).get("model_name", "") in
               ("FloatProgressModel", "IntProgressModel") for child in children)


def replace_widgets(env, doctree, docname: str) -> None:
    """A progress bar's widget goes (it was progress, not content); any other widget becomes a note saying why."""
    import json

    state = None
    for raw in list(doctree.findall(nodes.raw)):
        text = raw.astext()
        if WIDGET_VIEW not in text:
            continue
        state = widget_state(env, docname) if state is None else state
        try:
            view = json.loads(text.split(">", 1)[1].rsplit("</script>", 1)[0])
            view = json.loads(view) if isinstance(view, str) else view  # myst-nb writes it as a JSON string
            model_id = view.get("model_id", "") if isinstance(view, dict) else ""
        except (IndexError, ValueError):
            model_id = ""
        if model_id and is_progress_bar(model_id, state):
            raw.parent.remove(raw)
        else:
            raw.replace_self(nodes.raw("", WIDGET_NOTE, format="html"))


def doctree_resolved(app, doctree, docname: str) -> None:
    """Widget views are replaced; on the Definitions page, function names become links to their source."""
    replace_widgets(app.env, doctree, docname)
    if docname == DEFINITIONS and app.builder.format == "html":
        link_functions(app, doctree, docname)


def _locate(path: str) -> tuple[str, int] | None:
    """(module name, first line) of the function ``rlhf_course.<module>.<name>``, or None."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            obj = inspect.unwrap(obj)
            return obj.__module__, inspect.getsourcelines(obj)[1]
        except (AttributeError, TypeError, OSError):
            return None
    return None


def link_functions(app, doctree, docname: str) -> None:
    modules = app.env.course_source_modules = getattr(app.env, "course_source_modules", set())
    for literal in list(doctree.findall(nodes.literal)):
        text = literal.astext()
        if not text.startswith("rlhf_course.") or isinstance(literal.parent, nodes.reference):
            continue
        found = _locate(text)
        if found is None:
            continue  # tests/test_definitions.py fails on a name that does not resolve
        module, line = found
        modules.add(module)
        target = posixpath.join(SOURCE_PAGES, *module.split("."))
        uri = app.builder.get_relative_uri(docname, target) + f"#L{line}"
        reference = nodes.reference("", "", internal=True, refuri=uri, reftitle=f"{module}, line {line}")
        literal.replace_self(reference)
        reference.append(literal)


def collect_source_pages(app):
    """One page per module the Definitions page links to: its source, highlighted, a numbered anchor per line."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    for module in sorted(getattr(app.env, "course_source_modules", ())):
        source = Path(importlib.import_module(module).__file__).read_text()
        formatter = HtmlFormatter(linenos="inline", lineanchors="L", anchorlinenos=True, cssclass="highlight")
        body = (f"<h1>Source of <code>{html.escape(module)}</code></h1>"
                f'<div class="highlight-python notranslate">{highlight(source, PythonLexer(), formatter)}</div>')
        body = body.replace('id="L-', 'id="L').replace('href="#L-', 'href="#L')
        yield posixpath.join(SOURCE_PAGES, *module.split(".")), {"title": module, "body": body}, "page.html"


def page_context(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Plotly.js on pages with a figure, launch buttons on notebooks only, each script once."""
    if doctree is not None and "plotly-graph-div" in context.get("body", ""):
        if offline():
            app.add_js_file(PLOTLY_JS, priority=200)
        app.add_js_file("course.js")  # a figure's phone layout
    if not str(app.env.doc2path(pagename, base=False)).endswith(".ipynb") and "header_buttons" in context:
        context["header_buttons"][:] = [b for b in context["header_buttons"] if b.get("label") != "launch-buttons"]
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # an inline script's filename is '' or None, depending on who added it
        key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"][:] = unique


def build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    if offline():
        shutil.copy2(plotly_js(), static / PLOTLY_JS)
        target = static / "mathjax"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(mathjax_dir(), target, ignore=lambda folder, names: [n for n in names if n in MATHJAX_SKIP])


def setup(app):
    app.connect("config-inited", config_inited)
    app.connect("builder-inited", builder_inited)
    app.connect("doctree-resolved", doctree_resolved)
    app.connect("html-collect-pages", collect_source_pages)
    app.connect("html-page-context", page_context, priority=600)  # after sphinx-book-theme's buttons (501)
    app.connect("build-finished", build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
