"""Synthetic Data: reading prompts back to tasks, the filter, diversity measures, what each generation trains on."""

from __future__ import annotations

import pytest
import torch

from rlhf_course.synthetic_data import (assess_prompts, best_verified, distinct_answers, distinct_item_sets,
                                        distinct_ngrams, generation_rows, item_set, pre_query_template,
                                        verifier_mask)
from rlhf_course.toyworld import Prompt, all_prompts, verify
from rlhf_course.toyworld.prompts import parse_prompt

# --- reading a prompt back to its task ------------------------------------------


def test_every_prompt_of_the_world_parses_back_to_itself():
    prompts = [p for family in all_prompts().values() for split in family.values() for p in split]
    assert len(prompts) == 690
    for p in prompts:
        parsed = parse_prompt(p.text)
        assert parsed == p and parsed.spec == p.spec and parsed.answer == p.answer


def test_parse_reads_slots_and_answers():
    p = parse_prompt("  What is 7 minus 2?\n")
    assert (p.family, p.spec, p.answer) == ("arithmetic", {"a": 7, "b": 2, "op": "minus"}, "5")
    assert parse_prompt("Repeat the word moon twice.").answer == "moon moon"
    assert parse_prompt("Give me 4 tools.").spec == {"n": 4, "category": "tools"}


@pytest.mark.parametrize("text", [
    "What is 3 minus 4?",           # a negative difference is not a task of the world
    "What is 12 plus 3?",           # numbers are 1 to 9
    "List 6 fruits.",               # 2 to 5 items
    "List 2 birds.",                # no such category
    "Repeat the word moon thrice.",  # no such template
    "what is 3 plus 4?",            # templates are matched exactly
    "Write back rudely: my order is late",
    "me know if you need more.",
    "",
])
def test_parse_refuses_what_the_world_does_not_ask(text):
    assert parse_prompt(text) is None


def test_assess_counts_valid_new_test_and_distinct():
    train = all_prompts()["arithmetic"]["train"][0].text
    test = all_prompts()["listing"]["test"][0].text
    validation = all_prompts()["tone"]["validation"][0].text
    report = assess_prompts([train, train, test, validation, "nonsense"])
    assert report.share("valid") == pytest.approx(4 / 5)
    assert report.share("new") == pytest.approx(2 / 5)
    assert report.share("test") == pytest.approx(1 / 5)
    assert report.share("distinct") == pytest.approx(4 / 5)
    assert [t.text for t in report.kept()] == [train, train, validation]
    with pytest.raises(ValueError, match="Unknown kind"):
        report.share("novel")


class _Template:
    """A tokenizer stand-in whose chat template is Llama 2's."""

    def __init__(self, keep_content: bool = True):
        self.keep_content = keep_content

    def apply_chat_template(self, messages, tokenize=False):
        content = messages[0]["content"] if self.keep_content else ""
        return f"<s>[INST] {content} [/INST]"


def test_pre_query_template_stops_where_the_user_text_begins():
    assert pre_query_template(_Template()) == "<s>[INST] "
    with pytest.raises(ValueError, match="does not show the user's text"):
        pre_query_template(_Template(keep_content=False))


# --- the filter --------------------------------------------------------------------


def test_best_verified_keeps_the_best_accepted_answer_or_drops_the_prompt():
    scores = torch.tensor([[3.0, 1.0, 2.0], [-4.0, -0.5, -2.0], [1.0, 2.0, 0.0], [0.0, 5.0, 5.0]])
    passed = torch.tensor([[False, True, True], [True, False, True], [False, False, False], [True, True, True]])
    assert best_verified(scores, passed).tolist() == [2, 2, -1, 1]
    with pytest.raises(ValueError, match="same|shape"):
        best_verified(scores, passed[:, :2])


def test_verifier_mask_checks_only_prompts_with_an_exact_answer():
    arithmetic = parse_prompt("What is 2 plus 3?")
    listing = parse_prompt("List 2 fruits.")
    candidates = ["5", "6", "apple, pear", "nonsense"]
    assert verifier_mask([arithmetic, listing], candidates, 2, verify).tolist() == [[True, False], [True, True]]
    assert verifier_mask([arithmetic, listing], candidates, 2, None).all()


# --- diversity -----------------------------------------------------------------------


def test_distinct_measures_on_hand_computed_examples():
    assert distinct_answers(["a", "a", "b", "b"], ["x", "x", "y", "z"]) == pytest.approx(0.75)
    assert distinct_ngrams(["a b c", "A b d"], 2) == pytest.approx(3 / 4)
    assert distinct_ngrams(["one"], 2) == 0.0
    assert item_set("fruits", "Sure. apple, pear, apple, red") == frozenset({"apple", "pear"})
    fruits = Prompt("listing/x", "listing", "List 2 fruits.", {"n": 2, "category": "fruits"})
    word = parse_prompt("Repeat the word moon twice.")
    got = distinct_item_sets([fruits, fruits, fruits, word], ["apple, pear", "pear, apple", "apple, mango", "moon"])
    assert got == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="listing"):
        distinct_item_sets([word], ["moon moon"])


# --- what each generation trains on ----------------------------------------------------


def test_replace_trains_on_the_last_generation_only():
    real = [{"id": f"r{i}"} for i in range(4)]
    own = [[{"id": f"g1-{i}"} for i in range(4)], [{"id": f"g2-{i}"} for i in range(4)]]
    assert generation_rows(real, own, "replace", 4) == own[-1]


def test_accumulate_draws_a_fixed_number_from_everything_so_far():
    real = [{"id": f"r{i}"} for i in range(300)]
    own = [[{"id": f"g{g}-{i}"} for i in range(300)] for g in (1, 2)]
    rows = generation_rows(real, own, "accumulate", 300, seed=0)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 300
    real_share = sum(i.startswith("r") for i in ids) / 300
    assert abs(real_share - 1 / 3) < 0.1  # a third of the pool is real
    assert generation_rows(real, own, "accumulate", 300, seed=0) == rows  # reproducible


def test_generation_rows_explains_bad_input():
    with pytest.raises(ValueError, match="replace, accumulate"):
        generation_rows([], [[{}]], "mix", 1)
    with pytest.raises(ValueError, match="generation 0"):
        generation_rows([{}], [], "replace", 1)
