"""Execute every lab on the ``tiny`` profile and assert what it measured.

Each lab's results cell records an outcome (see ``rlhf_course.core.results``); the
thresholds live here, in the test, so that a lab which runs but learns nothing
fails. A lab without an entry in ``EXPECTATIONS`` fails too: every lab must
assert a measured outcome.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rlhf_course.core.results import load_outcome
from rlhf_course.tools.benchmark import lab_cost
from rlhf_course.tools.student import Execution, execute_notebook
from seed_check import record_seed_check

LABS_DIR = Path(__file__).resolve().parents[1] / "labs"
LABS = sorted(LABS_DIR.glob("*.ipynb"))

# lab (notebook stem) -> metric -> (comparison, threshold), checked on profile tiny. CI runs every lab at seed 0;
# a threshold must also hold at seed 1 (RLHF_COURSE_SKIP_REAL_BOOK=1 RLHF_COURSE_LAB_SEED=1 pytest ... -k <lab>).
EXPECTATIONS: dict[str, dict[str, tuple[str, float]]] = {
    # Synthetic data. The base model writes toy-world tasks after the pre-query template (valid 0.94 / 0.94 on seeds
    # 0 / 1, new 0.12 / 0.12, from the test split 0.06 / 0.06, dropped); self-training on unfiltered samples at
    # temperature 0.7 loses diversity (distinct answers per prompt fall 0.28 / 0.22 over three generations) and
    # keeping the real data loses less (difference 0.27 / 0.18). The distilled student beats the student of as many
    # human demonstrations: gold +1.23 / +1.00, win rate 0.73 / 0.72.
    "synthetic_data": {"prompts_valid_share": (">=", 0.8), "prompts_new_share": (">=", 0.06),
                       "prompts_test_share": (">=", 0.02), "replace_diversity_fall": (">=", 0.12),
                       "replace_minus_accumulate_fall": (">=", 0.08), "student_win_rate_vs_demos": (">=", 0.6),
                       "student_minus_demos_gold": (">=", 0.5)},
    # Constitutional AI (seeds 0 / 1): labels of a small AI judge (seed-trained on the constitution) agree with gold
    # well above chance (0.72 / 0.73; annotators 0.83 / 0.83); DPO on ~1,900 AI-labelled pairs beats SFT by gold
    # (0.65 / 0.67; annotator labels of the same pairs 0.63 / 0.65; an earlier version of the lab gave 0.59 at seed
    # 0, hence the low bound); rule-based revisions beat the original by gold (0.96 / 0.97). Not asserted, because
    # they do not hold with a margin on both seeds: dropping the 'concise' principle lowers the policy's gold
    # conciseness by 0.058 / 0.018, and swap-averaging the judge that reads both answers changes its agreement by
    # +0.017 / -0.003 (it answers "B" almost always).
    "constitutional_ai": {"ai_label_agreement_gold": (">=", 0.62), "ai_dpo_win_rate_vs_sft": (">=", 0.54),
                          "revision_better_share": (">=", 0.85)},
    # SFT clearly beats the base model, and flawed demonstrations clearly cap it. (Half the demonstrations are flawed:
    # the pipeline's SFT models win 0.67 and 0.68 against base on seeds 0 and 1, four answers per prompt.)
    "instruction_tuning": {"win_rate_vs_base": (">=", 0.63), "gold_drop_from_flawed_demos": (">=", 0.5)},
    # Noisier annotators agree less with gold; the length-loving annotator picks longer answers more often.
    "preference_data": {"noise_drop": (">=", 0.15), "length_bias_gap": (">=", 0.1)},
    # The reward model orders held-out pairs as gold does, learned the stock phrase that gold does not value,
    # improves with more pairs; the outcome reward model separates right from wrong answers.
    # Bradley–Terry recovers gold from one careful annotator and the pool's Borda count from the pool; Elo depends
    # on the order of the comparisons, the Bradley–Terry fit does not; noise blurs the ranking; a Condorcet cycle
    # defeats every ranking.
    # The chain rule on real samples: the learner's sum equals the trainers' token_logprobs (1.9e-6); fresh samples
    # come up as often as exp(log pi) says (mean |z| over 28 / 25 answers 1.08 / 0.88 at seeds 0 / 1; 0.8 expected,
    # about 0.12 from seed to seed); longer answers are less probable (correlation -0.44 / -0.55).
    "definitions": {"logprob_max_abs_error": ("<=", 1e-4), "fresh_mean_abs_z": ("<=", 1.5),
                    "testable_answers": (">=", 8), "length_logprob_corr": ("<=", -0.2)},
    "what_are_preferences": {"bt_rank_corr_with_gold": (">=", 0.8), "pool_rank_corr_with_borda": (">=", 0.75),
                             "elo_order_spread": (">=", 30.0), "bt_order_spread": ("<=", 1e-6),
                             "noise_rank_corr_drop": (">=", 0.15), "cycle_best_ordering_accuracy": ("<=", 0.7),
                             "cycle_bt_strength_range": ("<=", 0.5)},
    # pi* is exact (value = beta log Z), sharpening beta buys gold reward, and policy gradient reaches pi*.
    "optimization_rl": {"pg_kl_to_optimum_final": ("<=", 0.02), "pg_objective_gap_final": ("<=", 0.01),
                        "pg_objective_gain": (">=", 0.5), "reward_gain_at_small_beta": (">=", 1.0),
                        "optimum_value_error": ("<=", 1e-6)},
    "reward_modeling": {"rm_accuracy_gold": (">=", 0.75), "rm_phrase_effect": (">=", 0.2),
                        "gain_per_doubling": (">=", 0.005), "orm_auc": (">=", 0.8)},
    # Best-of-16 beats SFT with gold win rate >= 0.6, issue 5's bar (seeds 0 / 1: 0.67 / 0.72); its measured KL never
    # exceeds log n - (n-1)/n; gold peaks and then falls as n grows while the proxy keeps rising (drop 0.23 / 0.28);
    # one round of rejection-sampling fine-tuning beats SFT (0.64 / 0.68), and selecting the top sample beats
    # keeping a random one (+0.12 / +0.18).
    "rejection_sampling": {"bon16_win_rate_vs_sft": (">=", 0.6), "bon_kl_max_excess_over_bound": ("<=", 1e-9),
                           "bon_gold_drop_peak_to_max_n": (">=", 0.2), "rs_ft_round1_win_rate_vs_sft": (">=", 0.58),
                           "top_minus_random_win_rate": (">=", 0.04)},
    # Every method raises the gold reward over SFT (seeds 0 / 1: RLOO +0.79 / +0.82, TRL RLOO +0.82 / +0.77, GRPO
    # +0.63 / +0.71, REINFORCE +0.77 / +0.79), RLOO wins >= 0.6, issue 5's bar (0.68 / 0.69), and the from-scratch
    # RLOO learns like TRL's RLOOTrainer (gold gap 0.03 / 0.05).
    "policy_gradients": {"rloo_win_rate_vs_sft": (">=", 0.6), "rloo_gold_gain": (">=", 0.4),
                         "trl_rloo_gold_gain": (">=", 0.4), "grpo_gold_gain": (">=", 0.4),
                         "reinforce_gold_gain": (">=", 0.4), "rloo_trl_gold_gap": ("<=", 0.3),
                         # Section 9, RLOO for 15 steps with the token mean and with the mean per sequence: gold
                         # rises over the first step's in both (seeds 0 / 1: token +0.71 / +0.68, sequence +0.69 /
                         # +0.56) for 45 / 46 CPU-s. The mean per sequence ends 0.28 / 0.24 tokens shorter: recorded,
                         # not asserted (within the step-to-step noise of about a token).
                         # Its CPU seconds are recorded for the per-lab table, not asserted (a budget, not a test).
                         "agg_token_gold_gain": (">=", 0.25), "agg_sequence_gold_gain": (">=", 0.25)},
    # The whole pipeline in one notebook, with a reward model of 4000 pairs x 2 epochs. Measured (seeds 0 / 1, four
    # answers per test prompt; half the demonstrations are flawed): SFT gains 0.78 / 0.88 gold over base; the reward
    # model agrees with gold 0.70 / 0.715; PPO wins 0.65 / 0.64 against SFT (gold +0.61 / +0.51), DPO 0.63 / 0.64
    # (+0.51 / +0.60). The five-minute promise is asserted on the kernel's CPU time at one torch thread, which other
    # jobs on the same cores inflate far less than wall time: in CI runs, with two labs and two pipeline seeds on two
    # cores, the lab took 500 to 760 s of wall time and 333 to 506 s of CPU. The ceiling is loose, and the reward
    # model's size, the one thing the lab shrinks, is asserted too.
    "five_minute_rlhf": {"ppo_win_rate_vs_sft": (">=", 0.55), "ppo_gold_gain_over_sft": (">=", 0.3),
                         "dpo_win_rate_vs_sft": (">=", 0.55), "dpo_gold_gain_over_sft": (">=", 0.3),
                         "sft_gold_gain_over_base": (">=", 0.6), "rm_accuracy_gold": (">=", 0.62),
                         "rm_pairs": ("<=", 4000), "cpu_seconds": ("<=", 600.0)},
    # DPO, IPO, KTO and online DPO beat SFT by gold (seeds 0 / 1: DPO 0.61 / 0.63, online 0.625 / 0.63, IPO 0.60 /
    # 0.61, KTO 0.57 / 0.66); the reference-free ORPO and SimPO gain less (+0.54 / +0.46, +0.46 / +0.26); DPO's
    # implicit reward orders its training pairs as labelled (0.81 / 0.80) and held-out pairs as gold does (0.76 /
    # 0.75; the reward model 0.78 / 0.78); a larger beta holds the policy closer to SFT. (The accuracy TRL logs on
    # the last training batches read 0.83 / 0.67: too noisy to assert.)
    # Style, measured on seeds 0 / 1: padding moves the length-loving judge's win rate by +0.29 / +0.30 (gold: -0.15 /
    # -0.17); length control leaves +0.175 / +0.175, a cut by a factor 1.66 / 1.70 (not the "large factor" hoped for:
    # within a policy long answers are worse, so the length coefficient comes out too small); Kendall tau with gold
    # rises from -0.02 / -0.11 to 0.16 / 0.16; the length-only policy wins 0.58 / 0.54 under the judge and 0.285 /
    # 0.283 under gold (its judge win rate is the thinnest margin: 1.5 standard errors at seed 1).
    "style": {"gameability_raw": (">=", 0.22), "gameability_lc": ("<=", 0.24), "gameability_cut": (">=", 1.3),
              "tau_lc_minus_raw": (">=", 0.0), "length_only_judge_win_rate": (">=", 0.5),
              "length_only_gold_win_rate": ("<=", 0.4)},
    "direct_alignment": {"dpo_win_rate_vs_sft": (">=", 0.55), "online_dpo_win_rate_vs_sft": (">=", 0.55),
                         "ipo_win_rate_vs_sft": (">=", 0.55), "kto_win_rate_vs_sft": (">=", 0.55),
                         "orpo_gold_gain": (">=", 0.05), "simpo_gold_gain": (">=", 0.05),
                         "dpo_train_reward_accuracy": (">=", 0.7), "dpo_heldout_gold_accuracy": (">=", 0.7),
                         "beta_sweep_kl_drop": (">=", 1.0), "policy_gradient_points": (">=", 1)},
    # PPO beats SFT by gold (seeds 0 / 1: win 0.67 / 0.69, gain +0.80 / +0.79) within the KL its beta allows
    # (1.5 / 1.56 nats), the clip seldom binds (0.003 / 0.003), the critic learns values (final loss 0.22 / 0.27),
    # and the gold-KL figure has a policy-gradient point (the Policy Gradients lab's record, or RLOO trained in the
    # lab when the record is missing).
    "ppo": {"ppo_win_rate_vs_sft": (">=", 0.6), "ppo_gold_gain": (">=", 0.4), "ppo_kl": ("<=", 3.0),
            "final_clip_fraction": ("<=", 0.1), "final_value_loss": ("<=", 1.5), "policy_gradient_points": (">=", 1)},
    # RLVR (RLOO against the gated verifier, no KL, 30 steps) raises held-out pass@1 (seeds 0 / 1: +0.26 / +0.24) far
    # more than pass@16 (+0.06 / +0.10; the difference 0.20 / 0.14); the lenient listing verifier is hacked: its
    # acceptance rises (+0.33 / +0.33) while gold's format falls (-0.57 / -0.58) and the gold reward does not rise
    # (-0.16 / -0.11). Measured, not asserted because they do not hold on tiny: gated vs additive gold correctness
    # (-0.02 / -0.01), difficulty filtering's steps to 0.4 pass@1 (10 vs 10, 20 vs 15), expert iteration vs RLVR
    # (pass@1 0.59 vs 0.51, 0.54 vs 0.50), constant vs mean-per-sequence aggregation (-0.02 / +0.01).
    "reasoning": {"rlvr_pass1_gain": (">=", 0.15), "pass1_gain_minus_passk_gain": (">=", 0.05),
                  "lenient_reward_gain": (">=", 0.2), "lenient_gold_format_drop": (">=", 0.3),
                  "lenient_gold_change": ("<=", 0.1)},
    # Over-optimisation: RLOO with beta = 0 (150 steps) beats the best beta > 0 (60 steps) on the proxy and loses to
    # it on gold (seed 0: +1.08 proxy, -1.46 gold; seed 1: +0.93, -1.46); a larger beta holds the policy closer to SFT.
    # The estimator exercise reproduces the chapter's Gaussian table (k1's std 20x the KL at sigma 0.1, k2's bias 25%
    # at sigma 1, k1 and k3 unbiased), and k1 is negative on many real tokens (0.42 and 0.50 of them).
    "regularization": {"beta0_proxy_excess": (">=", 0.3), "beta0_gold_deficit": (">=", 0.5),
                       "kl_drop_beta0_to_largest": (">=", 5.0), "synthetic_k1_std_over_kl_sigma0_1": (">=", 15.0),
                       "synthetic_k2_bias_over_kl_sigma1": (">=", 0.2),
                       "synthetic_unbiased_max_abs_bias_over_kl": ("<=", 0.2),
                       "real_token_k1_share_negative": (">=", 0.2)},
    # Evaluation (issue 22). The judge that agrees best with gold on held-out votes (the careful annotator on both
    # seeds) ranks the six policies (base, SFT sampled and greedy, best-of-4, best-of-8, RLOO) as gold does (Kendall
    # tau, seeds 0 / 1: 1.0 / 0.73; one step of tau is 0.13); 400 A/A intervals cover 1/2 at 0.958 / 0.960 (nominal
    # 0.95); the power formula's n gives simulated power 0.785 / 0.779 (asked 0.8); training on the leaked test
    # prompts opens a test-vs-sibling accuracy gap of +0.49 / +0.46, from -0.005 / -0.023 before.
    "evaluation": {"validated_judge_rank_corr_with_gold": (">=", 0.5), "aa_coverage_error": ("<=", 0.03),
                   "power_error": ("<=", 0.05), "contamination_gap_before_abs": ("<=", 0.12),
                   "contamination_gap_after": (">=", 0.25), "contamination_gap_opened": (">=", 0.25)},
    # Goodhart against a gold reward (seeds 0 / 1): the best-of-n law fits (R^2 0.96 / 0.95); best-of-n gold turns
    # down (drop 0.33 / 0.33 from its peak to n = 64); RL at beta = 0 rises (+0.63 / +0.64) and falls (drop 0.70 /
    # 1.90) while the proxy keeps rising (+2.58 / +6.54); the noise-only proxy never turns down (drop 0.00 / 0.00);
    # the fitted peak moves out from 250 to 4,000 pairs (0.22 -> 0.90 / 0.65 -> 0.93: a gain of 0.67 / 0.28, so
    # the bound is low). Not asserted: RL peaking at a larger KL than best-of-n (-0.47 / +0.74 apart) and the
    # ensembles reducing the drop (they drop 0.05 / 0.11 more than one model).
    "over_optimization": {"bon_fit_r2": (">=", 0.8), "bon_gold_drop": (">=", 0.1), "rl_gold_peak_gain": (">=", 0.3),
                          "rl_gold_drop": (">=", 0.3), "rl_end_proxy_gain": (">=", 1.0),
                          "noise_proxy_gold_drop": ("<=", 0.05), "noise_proxy_gold_gain_max_n": (">=", 0.8),
                          "sweep_peak_d_gain": (">=", 0.1)},
}

LAB_SEED = int(os.environ.get("RLHF_COURSE_LAB_SEED", "0"))  # the SEED a lab runs with when executed on its own
COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def run_lab(notebook: Path, workdir: Path, kernel_env: dict[str, str]) -> Execution:
    """The one way tests execute a notebook: profile tiny, seed ``LAB_SEED`` (0 by default), results into ``workdir``."""
    env = {**kernel_env, "RLHF_COURSE_RESULTS_DIR": str(workdir), "RLHF_COURSE_PROFILE": "tiny"}
    return execute_notebook(notebook, workdir / notebook.name, {"PROFILE": "tiny", "SEED": LAB_SEED}, env=env,
                            cwd=workdir)


def failed_expectations(outcome: dict, expected: dict[str, tuple[str, float]]) -> list[str]:
    """Human-readable descriptions of the thresholds an outcome misses."""
    problems = []
    for metric, (comparison, threshold) in expected.items():
        if metric not in outcome:
            problems.append(f"{metric} was not recorded (recorded: {', '.join(outcome) or 'nothing'})")
        elif not COMPARISONS[comparison](outcome[metric], threshold):
            problems.append(f"{metric} = {outcome[metric]!r}, expected {comparison} {threshold}")
    return problems


@pytest.fixture(scope="session")
def labs_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labs")


def outcome_of(notebook: Path, request: pytest.FixtureRequest, kernel_env, lab_timings) -> dict:
    """The lab's recorded outcome on tiny, seed 0 (``LAB_SEED`` when the lab is executed on its own).

    Normally taken from the real book build, which executes every lab anyway
    (``built_site`` in conftest.py); with ``RLHF_COURSE_SKIP_REAL_BOOK=1`` the
    lab is executed here on its own.
    """
    lab = notebook.stem
    if os.environ.get("RLHF_COURSE_SKIP_REAL_BOOK") == "1":
        workdir = request.getfixturevalue("labs_workdir")
        run = run_lab(notebook, workdir, kernel_env)
        assert run.ok, f"{lab} failed at {run.error} (executed copy: {run.output})"
        record = load_outcome(lab, workdir)
        lab_timings[lab] = lab_cost(run.seconds, record)
        record_seed_check(lab, record["seed"], record["outcome"])
        return record
    if LAB_SEED != 0:
        pytest.fail("RLHF_COURSE_LAB_SEED applies when a lab is executed on its own: set RLHF_COURSE_SKIP_REAL_BOOK=1 "
                    "too (the book build runs every lab at seed 0).")
    site = request.getfixturevalue("built_site")
    if lab in site.lab_errors():
        pytest.fail(f"{lab} failed (executed copy: {site.root / 'labs' / notebook.name}):\n{site.lab_errors()[lab]}")
    try:
        record = load_outcome(lab, site.results_dir)
        lab_timings[lab] = lab_cost(site.lab_seconds(lab), record)
        return record
    except (FileNotFoundError, KeyError, ValueError) as err:
        pytest.fail(f"{lab} recorded no outcome in the book build ({err}). Build log tail:\n"
                    f"{site.result.stdout[-4000:]}\n{site.result.stderr[-4000:]}")


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", LABS, ids=[lab.stem for lab in LABS])
def test_lab_runs_and_learns(notebook: Path, request: pytest.FixtureRequest, kernel_env, lab_timings) -> None:
    lab = notebook.stem
    record = outcome_of(notebook, request, kernel_env, lab_timings)
    assert record["profile"] == "tiny", f"{lab} ran on {record['profile']!r}; it must honour PROFILE"
    assert record["seed"] == LAB_SEED, f"{lab} ran with seed {record['seed']!r}; it must honour SEED"
    if lab not in EXPECTATIONS:
        pytest.fail(
            f"Lab {lab!r} has no expectations. It recorded {record['outcome']}; add thresholds it must "
            f"meet to EXPECTATIONS in tests/test_notebooks.py, e.g. {{{lab!r}: {{'metric': ('>=', value)}}}}."
        )
    problems = failed_expectations(record["outcome"], EXPECTATIONS[lab])
    assert not problems, f"{lab} ran but did not reach its expected outcome: " + "; ".join(problems)


def test_expectations_name_existing_labs() -> None:
    """Catch typos: every entry in EXPECTATIONS names a lab notebook (once labs exist)."""
    if not LABS:
        pytest.skip("no labs yet")
    unknown = sorted(set(EXPECTATIONS) - {lab.stem for lab in LABS})
    assert not unknown, f"EXPECTATIONS mentions labs that do not exist in labs/: {unknown}"


def test_expectations_use_known_comparisons() -> None:
    for lab, metrics in EXPECTATIONS.items():
        for metric, (comparison, _threshold) in metrics.items():
            assert comparison in COMPARISONS, f"{lab}.{metric}: unknown comparison {comparison!r}"


def test_failed_expectations_explain() -> None:
    expected = {"win_rate": (">=", 0.6), "kl": ("<", 5.0)}
    assert failed_expectations({"win_rate": 0.7, "kl": 1.0}, expected) == []
    problems = failed_expectations({"win_rate": 0.4}, expected)
    assert problems == ["win_rate = 0.4, expected >= 0.6", "kl was not recorded (recorded: win_rate)"]


@pytest.mark.slow
@pytest.mark.notebooks
def test_failing_cell_fails_the_same_path(tmp_path: Path, kernel_env) -> None:
    """A lab with an error must fail through ``run_lab``, the path every lab takes."""
    nb = new_notebook(cells=[
        new_code_cell('PROFILE = "auto"\nSEED = 0', metadata={"tags": ["parameters"]}),
        new_code_cell("x = 1"),
        new_code_cell("raise RuntimeError('deliberate failure')"),
        new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "throwaway.ipynb"
    nbformat.write(nb, path)
    run = run_lab(path, tmp_path, kernel_env)
    assert not run.ok
    assert "RuntimeError" in run.error and "deliberate failure" in run.error
    executed = nbformat.read(run.output, as_version=4)
    assert executed.cells[-1].get("outputs", []) == [], "cells after the failure must not run"
