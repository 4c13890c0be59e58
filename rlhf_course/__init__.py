"""rlhf_course: the companion package of the RLHF course.

One subpackage per chapter, named after it (``rlhf_course.direct_alignment``
for the Direct Alignment chapter), each with ``loss.py`` (pure tensor
functions), ``train.py`` (the stage) and ``checks.py`` (the lab's exercises);
below them ``core`` (what every stage shares) and ``toyworld``; above them
``shared_models``, ``pipeline`` and ``tools``. A lab calls these functions; the
book explains them. ``book/contributing.md`` has the map.
"""

__version__ = "0.1.0"
