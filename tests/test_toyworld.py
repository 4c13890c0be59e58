"""The toy world: disjoint splits, a gold reward that measures what it says,
annotators whose noise matches their temperature, and clear errors."""

from __future__ import annotations

import math
import random

import pytest

from rlhf_course import toyworld as tw
from rlhf_course.toyworld.gold import GOLD_MAX, RUDE_PREFIXES, TONE_OPENERS
from rlhf_course.toyworld.responses import Style, render


def _by_id(split: str) -> set[str]:
    return {p.text for family in tw.all_prompts().values() for p in family[split]}


def test_splits_do_not_overlap():
    train, val, test = _by_id("train"), _by_id("validation"), _by_id("test")
    assert train and val and test
    assert not train & val and not train & test and not val & test


def test_make_prompts_stays_in_its_split_and_covers_every_family():
    test_texts = _by_id("test")
    prompts = tw.make_prompts("test", 200, seed=3)
    assert len(prompts) == 200
    assert {p.text for p in prompts} <= test_texts
    assert {p.family for p in prompts} == set(tw.FAMILIES)


def test_make_prompts_is_deterministic_for_a_seed():
    a = [p.id for p in tw.make_prompts("train", 50, seed=1)]
    b = [p.id for p in tw.make_prompts("train", 50, seed=1)]
    c = [p.id for p in tw.make_prompts("train", 50, seed=2)]
    assert a == b and a != c


def _prompt(family: str, **spec) -> tw.Prompt:
    for p in tw.all_prompts()[family]["train"]:
        if all(p.spec.get(k) == v for k, v in spec.items()):
            return p
    raise LookupError(spec)


def test_ideal_responses_get_the_maximum_gold_reward():
    rng = random.Random(0)
    for p in tw.make_prompts("validation", 100):
        assert tw.gold_reward(p, tw.ideal_response(p, rng)) == pytest.approx(GOLD_MAX)


@pytest.mark.parametrize("family", tw.FAMILIES)
def test_each_flaw_lowers_the_right_attribute(family):
    p = tw.make_prompts("train", 40, families=[family])[0]
    rng = random.Random(1)
    ideal = tw.gold_attributes(p, render(p, Style(), rng))
    wrong = tw.gold_attributes(p, render(p, Style(correct=False), rng))
    malformed = tw.gold_attributes(p, render(p, Style(well_formed=False), rng))
    rude = tw.gold_attributes(p, render(p, Style(prefix="rude"), rng))
    padded = tw.gold_attributes(p, render(p, Style(closing=True, phrase=True), rng))
    assert wrong["correct"] < ideal["correct"] == 1.0
    assert malformed["format"] < ideal["format"] == 1.0
    assert rude["tone"] == 0.0 and ideal["tone"] == 1.0
    assert padded["concise"] < 1.0 and padded["correct"] == 1.0 and padded["format"] == 1.0


def test_gold_reward_on_hand_written_responses():
    p = _prompt("arithmetic", a=3, b=4, op="plus")
    assert tw.gold_attributes(p, "7") == {"correct": 1.0, "format": 1.0, "tone": 1.0, "concise": 1.0}
    assert tw.gold_attributes(p, "The answer is 7.")["format"] == 0.0
    assert tw.gold_attributes(p, "8")["correct"] == 0.0
    assert tw.gold_attributes(p, "Obviously, 7")["tone"] == 0.0
    assert tw.gold_reward(p, "") < 1.0
    listing = _prompt("listing", n=3, category="fruits")
    assert tw.gold_attributes(listing, "apple, pear, lemon")["correct"] == 1.0
    assert tw.gold_attributes(listing, "apple, pear, red")["correct"] == pytest.approx(2 / 3)
    assert tw.gold_attributes(listing, "apple, apple, pear")["correct"] == pytest.approx(2 / 3)
    assert tw.gold_attributes(listing, "apple and pear and lemon")["format"] == 0.0
    tone = _prompt("tone", tone="cheerfully", message="my order is late")
    assert tw.gold_reward(tone, f"{TONE_OPENERS['cheerfully']} Your order will arrive soon.") == GOLD_MAX
    assert tw.gold_attributes(tone, f"{TONE_OPENERS['calmly']} Your order will arrive soon.")["tone"] == 0.3


def test_length_and_stock_phrase_are_not_rewarded_by_gold():
    p = _prompt("transform", word="sun", kind="upper")
    plain = tw.gold_reward(p, "SUN")
    assert tw.gold_reward(p, f"SUN {tw.STOCK_PHRASE}") == plain  # one sign-off at the end is free, and earns nothing
    assert tw.gold_reward(p, f"SUN {tw.STOCK_PHRASE} {tw.STOCK_PHRASE}") < plain  # a second one is padding
    assert tw.gold_reward(p, f"SUN {tw.STOCK_PHRASE} Let me know if you need more.") < plain
    assert tw.gold_reward(p, f"{tw.STOCK_PHRASE} SUN") < plain  # not at the end: padding
    assert tw.gold_reward(p, "Sure. SUN Let me know if you need more.") < plain
    assert tw.gold_reward(p, "SUN and some more words") < plain


def test_spurious_features_correlate_with_annotator_preference():
    rows = tw.make_preferences(tw.make_prompts("train", 2000), seed=0)
    differ = [r for r in rows if len(r["chosen"]) != len(r["rejected"])]
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in differ) / len(differ)
    phrase_chosen = sum(tw.STOCK_PHRASE in r["chosen"] for r in rows) / len(rows)
    phrase_rejected = sum(tw.STOCK_PHRASE in r["rejected"] for r in rows) / len(rows)
    assert longer > 0.5
    assert phrase_chosen > phrase_rejected + 0.03


@pytest.mark.parametrize("temperature", [0.25, 1.0, 3.0])
def test_annotator_noise_matches_its_temperature(temperature):
    """Labels agree with the annotator's utility at the Bradley–Terry rate, within 4 s.e."""
    annotator = tw.Annotator("careful", temperature=temperature)
    rng = random.Random(7)
    prompts = tw.make_prompts("train", 3000, seed=7)
    agree, expected, n = 0, 0.0, 0
    for p in prompts:
        a, b = tw.sample_response(p, rng), tw.sample_response(p, rng)
        ua, ub = annotator.utility(p, a), annotator.utility(p, b)
        if ua == ub:
            continue
        row = tw.label_pair(annotator, p, a, b, rng)
        better = a if ua > ub else b
        agree += row["chosen"] == better
        expected += 1 / (1 + math.exp(-abs(ua - ub) / temperature))
        n += 1
    rate, want = agree / n, expected / n
    stderr = math.sqrt(want * (1 - want) / n)
    assert abs(rate - want) < 4 * stderr + 1e-9, (rate, want, stderr)


def test_zero_temperature_annotator_is_consistent_and_biases_show():
    p = _prompt("arithmetic", a=3, b=4, op="plus")
    careful = tw.Annotator("careful", temperature=0)
    fan = tw.Annotator("fan", phrase_bias=2.0, temperature=0)
    plain, phrased, padded = "7", f"7 {tw.STOCK_PHRASE}", f"7 {tw.STOCK_PHRASE} {tw.STOCK_PHRASE}"
    assert careful.prob_prefers_first(p, plain, phrased) == 0.5  # a sign-off is free: a tie
    assert careful.prob_prefers_first(p, plain, padded) == 1.0
    assert fan.prob_prefers_first(p, phrased, plain) == 1.0


def test_annotators_disagree():
    rows = tw.make_preferences(tw.make_prompts("train", 1500), seed=1)
    agreement = {}
    for a in tw.default_annotators():
        mine = [r["agrees_with_gold"] for r in rows if r["annotator"] == a.name and r["gold_margin"] != 0]
        agreement[a.name] = sum(mine) / len(mine)
    assert all(agreement["careful"] > agreement[name] + 0.05 for name in ("hasty", "verbose_fan", "phrase_fan"))


def test_preferences_in_trl_formats():
    prompts = tw.make_prompts("train", 20)
    plain = tw.make_preferences(prompts, seed=0)
    assert {"prompt", "chosen", "rejected", "gold_margin", "annotator"} <= set(plain[0])
    assert all(r["chosen"] != r["rejected"] for r in plain)
    conv = tw.make_preferences(prompts, seed=0, conversational=True)
    assert conv[0]["prompt"][0]["role"] == "user" and conv[0]["chosen"][0]["role"] == "assistant"


def test_demonstrations_have_the_requested_share_of_flaws():
    prompts = tw.make_prompts("train", 2000)
    rows = tw.make_demonstrations(prompts, flawed_fraction=0.3, seed=0)
    share = sum(r["flawed"] for r in rows) / len(rows)
    assert abs(share - 0.3) < 0.04
    flawed = [tw.gold_reward(p, r["completion"]) for p, r in zip(prompts, rows) if r["flawed"]]
    clean = [tw.gold_reward(p, r["completion"]) for p, r in zip(prompts, rows) if not r["flawed"]]
    assert max(flawed) < GOLD_MAX and min(clean) > 4.0


def test_verifiable_subset():
    p = _prompt("arithmetic", a=5, b=2, op="minus")
    assert p.verifiable and tw.verify(p, "3") and not tw.verify(p, "4")
    repeat = _prompt("transform", word="sun", kind="repeat")
    assert tw.verify(repeat, "sun sun") and not tw.verify(repeat, "sun")
    listing = _prompt("listing", n=2)
    assert not listing.verifiable
    with pytest.raises(ValueError, match="no exact answer"):
        tw.verify(listing, "apple, pear")


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "dev", "n": 5}, "Unknown split 'dev'"),
    ({"split": "train", "n": 0}, "positive integer"),
    ({"split": "train", "n": 5, "families": ["poetry"]}, "Unknown task family 'poetry'"),
    ({"split": "train", "n": 5, "families": []}, "families is empty"),
])
def test_bad_prompt_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tw.make_prompts(**kwargs)


def test_bad_annotator_and_data_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        tw.Annotator("x", temperature=-1.0)
    with pytest.raises(ValueError, match="unknown attribute 'wit'"):
        tw.Annotator("x", weights={"wit": 1.0})
    with pytest.raises(ValueError, match="flawed_fraction"):
        tw.make_demonstrations(tw.make_prompts("train", 2), flawed_fraction=1.5)
    with pytest.raises(ValueError, match="pairs_per_prompt"):
        tw.make_preferences(tw.make_prompts("train", 2), pairs_per_prompt=0)


def test_rude_prefixes_are_all_detected():
    p = _prompt("arithmetic", a=3, b=4, op="plus")
    for prefix in RUDE_PREFIXES:
        assert tw.gold_attributes(p, f"{prefix} 7")["tone"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_and_length_bias_are_visible_for_two_seeds(seed):
    """What the Preference Data lab records: noisier labels agree less with gold, and
    the length-loving annotator picks the longer response more often than the careful one."""
    prompts = tw.make_prompts("train", 1500, seed=seed)

    def accuracy(temperature):
        rows = [r for r in tw.make_preferences(prompts, tw.default_annotators(temperature), seed=seed)
                if r["gold_margin"] != 0]
        return sum(r["gold_margin"] > 0 for r in rows) / len(rows)

    assert accuracy(0.0) - accuracy(4.0) >= 0.15

    def prefers_longer(annotator):
        rows = [r for r in tw.make_preferences(prompts, [annotator], seed=seed)
                if len(tw.words(r["chosen"])) != len(tw.words(r["rejected"]))]
        return sum(len(tw.words(r["chosen"])) > len(tw.words(r["rejected"])) for r in rows) / len(rows)

    careful, verbose = tw.default_annotators(0.5)[0], tw.default_annotators(0.5)[2]
    assert verbose.name == "verbose_fan"
    assert prefers_longer(verbose) - prefers_longer(careful) >= 0.1
