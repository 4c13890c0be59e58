"""rlhf_course: the companion package of the RLHF course.

Each module is one stage or one idea of the RLHF pipeline, named after the
chapter that teaches it. A lab calls these functions; the book explains them.
"""

__version__ = "0.1.0"
