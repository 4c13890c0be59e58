"""The code of the Reasoning chapter (``book/reasoning.md``, ``labs/reasoning.ipynb``).

- verifiers.py: verifiers for the toy world's arithmetic and transform prompts (correctness and format),
  additive, gated and binary rewards, and a deliberately lenient verifier for listing
- evaluation.py: sampling and verifying; pass@k, format and length on held-out prompts
- filtering.py: solve rates, difficulty filtering, zero-advantage groups
- train.py: the RLVR stage (the course's RLOO, or TRL's GRPO, against a verifier, no KL by default)
- checks.py: the lab's exercise checks

pass@k is :func:`rlhf_course.core.evaluation.pass_at_k`. The chapter's public names are importable from here::

    from rlhf_course import reasoning
"""

from .evaluation import correct_table, measure
from .filtering import filter_by_difficulty, solve_rates, zero_advantage_groups, zero_advantage_share
from .train import RLVRResult, rlvr_profile, train_rlvr, train_rlvr_grpo
from .verifiers import (COMBINATIONS, VERIFIABLE_FAMILIES, Verdict, additive, binary, gated, lenient_listing_verdict,
                        verifier_reward, verify)

__all__ = [
    "correct_table",
    "measure",
    "filter_by_difficulty",
    "solve_rates",
    "zero_advantage_groups",
    "zero_advantage_share",
    "RLVRResult",
    "rlvr_profile",
    "train_rlvr",
    "train_rlvr_grpo",
    "COMBINATIONS",
    "VERIFIABLE_FAMILIES",
    "Verdict",
    "additive",
    "binary",
    "gated",
    "lenient_listing_verdict",
    "verifier_reward",
    "verify",
]
