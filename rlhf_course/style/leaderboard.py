"""Raw, length-controlled and gold win rates of several policies against one baseline, side by side.

:func:`style_leaderboard` judges every policy's responses against the same
baseline responses with a (biased) judge and with gold, and fits one
length-controlled (or style-controlled) regression over all of them.
:func:`pipeline_style_rows` does the same for the stages saved by
``rlhf-course pipeline`` (which stores models, not samples: each stage is
sampled again on the test prompts).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rlhf_course.style.judges import gold_judge, length_loving_judge, outcomes
from rlhf_course.style.length_control import StyleFit, controlled_win_rates
from rlhf_course.toyworld import Prompt


def style_leaderboard(judge, prompts: list[Prompt], responses: dict[str, list[str]], baseline: list[str],
                      features: tuple[str, ...] = ("length",)) -> tuple[pd.DataFrame, StyleFit]:
    """One row per policy: ``raw`` and ``controlled`` win rate under ``judge``, and ``gold`` win rate.

    Every policy is compared with the same ``baseline`` responses (entry i of
    each list answers ``prompts[i]``); gold ties count half.
    """
    judged = {name: outcomes(judge, prompts, rs, baseline) for name, rs in responses.items()}
    table, fit = controlled_win_rates(judged, responses, baseline, features)
    truth = gold_judge()
    table["gold"] = [float(outcomes(truth, prompts, responses[n], baseline).mean()) for n in table.index]
    return table, fit


def pipeline_style_rows(out_dir: str | Path, profile, seed: int = 0) -> pd.DataFrame:
    """Raw and length-controlled win rates against SFT of every policy stage ``rlhf-course pipeline`` saved.

    The judge is the length-loving annotator (:func:`length_loving_judge`);
    gold's win rate is given beside. Each stage's ``<out_dir>/<stage>/final``
    model is sampled on the test prompts (``core.evaluation.eval_prompts``),
    and so is the SFT model a second time, as the baseline. Stages without a
    saved model (``base``, ``bon``) are left out, and so is the reward model.
    """
    from transformers import AutoTokenizer

    from rlhf_course.core.evaluation import eval_prompts, sample_policy
    from rlhf_course.core.models import load_policy

    out = Path(out_dir)
    sft_path = out / "sft" / "final"
    if not (sft_path / "config.json").exists():
        raise FileNotFoundError(f"No SFT model at {sft_path}: run the pipeline's sft stage first.")
    tokenizer, prompts = AutoTokenizer.from_pretrained(sft_path), eval_prompts(profile, seed)
    baseline = sample_policy(load_policy(sft_path, profile), tokenizer, prompts, profile, seed=seed + 1000).responses
    responses = {stage: sample_policy(load_policy(out / stage / "final", profile), tokenizer, prompts, profile,
                                      seed=seed).responses
                 for stage in sorted(p.parent.parent.name for p in out.glob("*/final/config.json"))
                 if stage != "rm"}
    table, _ = style_leaderboard(length_loving_judge(seed), prompts, responses, baseline)
    return table.rename(columns={"raw": "raw_win_rate_vs_sft", "controlled": "lc_win_rate_vs_sft",
                                 "gold": "gold_win_rate_vs_sft"})
