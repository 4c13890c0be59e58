"""The code of the Rejection Sampling chapter (``book/rejection_sampling.md``, ``labs/rejection_sampling.ipynb``).

- selection.py: best of n, top k, random k, and the KL cost of best-of-n
- train.py: best-of-n sampling with a reward function, and rejection-sampling fine-tuning
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import rejection_sampling
"""

from .selection import (best_of_n_curve, best_of_n_kl, best_of_n_kl_bound, estimate_best_of_n_kl, select_best,
                        select_random_k, select_top_k)
from .train import BestOfN, RejectionSamplingResult, best_of_n, rejection_sampling_finetune

__all__ = [
    "best_of_n_curve",
    "best_of_n_kl",
    "best_of_n_kl_bound",
    "estimate_best_of_n_kl",
    "select_best",
    "select_random_k",
    "select_top_k",
    "BestOfN",
    "RejectionSamplingResult",
    "best_of_n",
    "rejection_sampling_finetune",
]
