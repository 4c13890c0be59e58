"""The code of the Regularization chapter (``book/regularization.md``, ``labs/regularization.ipynb``).

- loss.py: the k1, k2 and k3 estimators of the KL divergence
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import regularization
"""

from .loss import ESTIMATORS, kl_estimators

__all__ = [
    "ESTIMATORS",
    "kl_estimators",
]
