"""The pipeline's opt-in stages of the Advanced chapters (rlaif, distill, rlvr) and the Style chapter's columns.

Their labs train and assert the methods at full tiny size; here they run at a
few steps, after SFT and a small reward model, to check that each trains,
saves, and records what the README's results table shows.
"""

import pytest

from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.pipeline import DEFAULT_STAGES, POLICY_STAGES, STYLE_FIELDS, parse_stages, run_pipeline

SMALL = ["n_eval_prompts=40", "sft.n_demonstrations=48", "sft.epochs=1", "rm.n_pairs=48", "rm.epochs=1",
         "rm.n_eval_pairs=16", "rlaif.n_pairs=60", "rlaif.n_seed_per_principle=8", "distill.teacher=sft", "distill.k=2",
         "rlvr.steps=2", "rlvr.prompts_per_step=4", "rlvr.k=2", "rlvr.n_test=8", "rlvr.n_samples=4",
         "dpo.batch_size=8"]


def test_the_advanced_stages_run_only_when_asked_for():
    assert not {"rlaif", "distill", "rlvr"} & set(DEFAULT_STAGES)
    assert parse_stages("rlvr,sft") == ["base", "sft", "rlvr"]


@pytest.fixture(scope="module")
def advanced_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("advanced")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLHF_COURSE_RUNS", str(out / "runs"))
        profile = apply_overrides(get_profile("tiny"), SMALL)
        results = run_pipeline(profile, out, stages="sft,rm,rlaif,distill,rlvr", seed=0, progress=False)
    return profile, out, results["stages"]


def test_each_advanced_stage_saves_its_policy_and_records_its_measures(advanced_run):
    profile, out, stages = advanced_run
    for name in ("rlaif", "distill", "rlvr"):
        assert (out / name / "final" / "model.safetensors").exists(), name
        assert 0.0 <= stages[name]["win_rate_vs_sft"] <= 1.0 and stages[name]["kl_to_ref"] is not None, name
    rlaif = stages["rlaif"]
    assert 0.0 <= rlaif["ai_label_agreement_gold"] <= 1.0 and 0 < rlaif["ai_pairs"] <= 60
    distill = stages["distill"]
    assert distill["teacher"] == "sft" and 0 < distill["distill_rows"] <= profile.sft.n_demonstrations
    assert 0.0 < distill["filter_kept_share"] <= 1.0
    rlvr = stages["rlvr"]
    for prefix in ("", "sft_"):  # pass@k can only grow with k
        assert 0.0 <= rlvr[f"{prefix}pass@1"] <= rlvr[f"{prefix}pass@2"] <= rlvr[f"{prefix}pass@4"] <= 1.0
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in ("rlaif", "distill", "rlvr")) and "length-controlled" in table


def test_every_measured_policy_gets_a_raw_and_a_length_controlled_judge_win_rate(advanced_run):
    _, _, stages = advanced_run
    policies = [name for name in POLICY_STAGES if name in stages]
    assert policies == ["base", "sft", "rlaif", "distill", "rlvr"]
    assert stages["sft"]["judge_win_rate_vs_sft"] == stages["sft"]["lc_win_rate_vs_sft"] == 0.5
    for name in policies:
        assert all(0.0 <= stages[name][field] <= 1.0 for field in STYLE_FIELDS), name


def test_distill_names_the_missing_teacher_stage(advanced_run):
    profile, out, _ = advanced_run
    with pytest.raises(FileNotFoundError, match=r"rloo stage's model.*--set distill.teacher"):
        run_pipeline(apply_overrides(profile, ["distill.teacher=rloo"]), out, stages="distill", seed=0, progress=False)


def test_a_later_run_of_one_stage_still_compares_base_with_sft(advanced_run):
    profile, out, stages = advanced_run
    again = run_pipeline(profile, out, stages="rlvr", seed=0, progress=False)["stages"]
    assert again["base"]["win_rate_vs_sft"] == pytest.approx(stages["base"]["win_rate_vs_sft"])
    assert again["rlaif"] == stages["rlaif"]  # the stages not run again are kept as they were
