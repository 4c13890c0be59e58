"""The Constitutional AI chapter's code: the constitution, critique-and-revise, AI labels against gold, the checks."""

from __future__ import annotations

import pytest

from rlhf_course import constitutional_ai as cai
from rlhf_course.constitutional_ai import checks
from rlhf_course.core.judges import swap_averaged, verdict
from rlhf_course.teaching.checking import ExerciseError
from rlhf_course.toyworld import Style, gold_attributes, gold_reward, make_prompts, render, sample_response

PROMPTS = {p.family: p for p in make_prompts("test", 60, seed=0)}
PRINCIPLE = {p.name: p for p in cai.CONSTITUTION}


def test_every_principle_names_a_gold_attribute_and_can_be_dropped():
    assert {p.attribute for p in cai.CONSTITUTION} == {"correct", "format", "tone", "concise"}
    assert [p.name for p in cai.without(cai.CONSTITUTION, "tone")] == ["correct", "format", "concise"]
    with pytest.raises(ValueError, match="No principle called 'kindness'"):
        cai.without(cai.CONSTITUTION, "kindness")


@pytest.mark.parametrize("family", ["arithmetic", "listing", "transform", "tone"])
@pytest.mark.parametrize("name", ["correct", "format", "tone", "concise"])
def test_a_revision_fixes_its_attribute_and_never_lowers_gold(family, name):
    import random

    prompt, principle, rng = PROMPTS[family], PRINCIPLE[name], random.Random(7)
    for _ in range(30):
        response = sample_response(prompt, rng, p_flaw=1.0)
        revision = cai.revise(prompt, response, principle)
        before, after = gold_attributes(prompt, response), gold_attributes(prompt, revision)
        assert gold_reward(prompt, revision) >= gold_reward(prompt, response), (response, revision)
        if before[name] == 1.0:
            assert revision == response  # nothing to fix: the critique finds no fault
        elif name in ("correct", "tone"):
            assert after[name] == 1.0, (response, revision)


def test_revise_by_hand():
    arithmetic = PROMPTS["arithmetic"]
    answer = arithmetic.answer
    assert cai.revise(arithmetic, f"Ugh, fine. {answer}", PRINCIPLE["tone"]) == answer
    assert cai.revise(arithmetic, f"Sure. {answer} I hope this helps! Let me know if you need more.",
                      PRINCIPLE["concise"]) == answer
    assert cai.revise(arithmetic, f"The answer is {answer}.", PRINCIPLE["format"]) == answer


def test_principle_label_reads_only_its_attribute():
    prompt = PROMPTS["arithmetic"]
    rude_right = f"Ugh, fine. {prompt.answer}"
    polite_wrong = str(int(prompt.answer) + 1)
    assert cai.principle_label(PRINCIPLE["tone"], prompt, rude_right, polite_wrong) == 1
    assert cai.principle_label(PRINCIPLE["correct"], prompt, rude_right, polite_wrong) == 0
    assert cai.principle_label(PRINCIPLE["format"], prompt, polite_wrong, prompt.answer) == -1


def test_seed_labels_are_balanced_and_right_by_their_principle():
    rows = cai.seed_labels(cai.CONSTITUTION, 20, seed=0)
    assert len(rows) == 80 and {r["principle"] for r in rows} == set(PRINCIPLE)
    by_text = {p.text: p for p in make_prompts("train", 4 * 20 * 4, seed=1000)}  # as seed_labels draws them
    for r in rows:
        attribute = PRINCIPLE[r["principle"]].attribute
        prompt = by_text[r["prompt"]]
        assert gold_attributes(prompt, r["chosen"])[attribute] > gold_attributes(prompt, r["rejected"])[attribute]
    assert all(r["principle"] != "tone" for r in cai.seed_labels(cai.without(cai.CONSTITUTION, "tone"), 5))


def test_ai_labelled_keeps_swaps_and_drops_ties():
    prompt = PROMPTS["arithmetic"]
    good, bad = prompt.answer, f"Ugh, fine. {int(prompt.answer) + 2}"
    rows = [{"prompt": prompt.text, "chosen": bad, "rejected": good}] * 3
    out = cai.ai_labelled(rows, [prompt] * 3, [0, 1, -1])
    assert len(out) == 2 and out[0]["chosen"] == bad and out[1]["chosen"] == good
    assert out[1]["gold_margin"] > 0 and out[0]["gold_margin"] < 0 and out[1]["annotator"] == "ai_judge"


def test_error_by_attribute_puts_a_one_principle_blind_spot_on_that_attribute():
    prompt = PROMPTS["arithmetic"]
    right, wrong = prompt.answer, str(int(prompt.answer) + 1)
    rude = f"Ugh, fine. {prompt.answer}"
    pairs = [[right, wrong]] * 4 + [[right, rude]] * 4
    blind_to_correctness = [1, 1, 1, 1, 0, 0, 0, 0]
    table = cai.error_by_attribute([prompt] * 8, pairs, {"judge": blind_to_correctness})
    assert table.loc["correct", "judge"] == 1.0 and table.loc["tone", "judge"] == 0.0
    assert table.loc["all", "judge"] == 0.5 and table.loc["correct", "pairs"] == 4


def test_order_report_of_a_judge_that_always_picks_a():
    judge = checks.TableJudge({("x", "y"): 0.9, ("y", "x"): 0.9})
    prompt = PROMPTS["arithmetic"]
    x, y = prompt.answer, str(int(prompt.answer) + 1)
    judge.table = {(x, y): 0.9, (y, x): 0.9}
    report = cai.order_report(judge, [prompt] * 4, [[x, y]] * 4)
    assert report["consistency"] == 0.0 and report["first_rate"] == 1.0
    assert report["swap_agreement"] == 0.5  # every pair a tie, counted half


def test_pairwise_judge_rows_put_the_better_answer_at_the_letter_they_name():
    seeds = cai.seed_labels(cai.CONSTITUTION, 10, seed=0)
    rows = cai.pairwise_judge_rows(seeds, seed=0)
    assert {r["completion"] for r in rows} == {"A", "B"}
    for seed_row, row in zip(seeds, rows):
        letter = "A" if row["completion"] == "A" else "B"
        assert f"Response {letter}: {seed_row['chosen']}\n" in row["prompt"] + "\n"


# ----------------------------------------------------------------------------- the exercises' checks


def test_swap_check_accepts_the_reference_and_catches_the_common_mistakes():
    checks.check_swap_averaged(swap_averaged)

    def no_flip(judge, prompts, completions):
        f = judge.prob_first(prompts, completions)
        s = judge.prob_first(prompts, [[b, a] for a, b in completions])
        return [verdict((x + y) / 2) for x, y in zip(f, s)]

    def vote(judge, prompts, completions):
        f = [verdict(p) for p in judge.prob_first(prompts, completions)]
        s = [verdict(1 - p) for p in judge.prob_first(prompts, [[b, a] for a, b in completions])]
        return [a if a == b else -1 for a, b in zip(f, s)]

    def one_order(judge, prompts, completions):
        return [verdict(p) for p in judge.prob_first(prompts, completions)]

    with pytest.raises(ExerciseError, match="always prefers position A|1 - p"):
        checks.check_swap_averaged(no_flip)
    with pytest.raises(ExerciseError, match="don't vote"):
        checks.check_swap_averaged(vote)
    with pytest.raises(ExerciseError, match="tie"):
        checks.check_swap_averaged(one_order)


def _pairs(prompts, responses, principle):
    rows = []
    for p, r in zip(prompts, responses):
        revision = cai.revise(p, r, principle)
        if revision != r:
            rows.append({"prompt": p.text, "chosen": revision, "rejected": r})
    return rows


def test_revision_check_accepts_the_reference_and_catches_the_common_mistakes():
    checks.check_critique_and_revise_pairs(_pairs)

    def swapped(prompts, responses, principle):
        return [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in _pairs(prompts, responses, principle)]

    def keeps_unchanged(prompts, responses, principle):
        return [{"prompt": p.text, "chosen": cai.revise(p, r, principle), "rejected": r}
                for p, r in zip(prompts, responses)]

    with pytest.raises(ExerciseError, match="swapped"):
        checks.check_critique_and_revise_pairs(swapped)
    with pytest.raises(ExerciseError, match="leave it out"):
        checks.check_critique_and_revise_pairs(keeps_unchanged)


def test_rendered_styles_used_in_the_checks_are_what_the_revisions_expect():
    import random

    prompt = PROMPTS["tone"]
    rude = render(prompt, Style(prefix="rude"), random.Random(0))
    assert gold_attributes(prompt, cai.revise(prompt, rude, PRINCIPLE["tone"]))["tone"] == 1.0
