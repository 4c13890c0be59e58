"""Trainers that take any data: rows written in two hub schemas train the reward model and DPO.

We write a few records in the schemas of HuggingFaceH4/ultrafeedback_binarized
(``prompt``, ``chosen``/``rejected`` as message lists, ``score_chosen``,
``score_rejected``) and Anthropic/hh-rlhf (``chosen``/``rejected`` as full
"\\n\\nHuman: … \\n\\nAssistant: …" transcripts) to local JSON Lines files, load
them with ``datasets.load_dataset("json", ...)`` through the course's loader
(:func:`rlhf_course.preference_data.load_preference_files`: the hub adapters and
the one validator), and train with the same stage functions the labs call.
No network: the records are ours.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.core.sampling import completion_logprobs
from rlhf_course.direct_alignment import train_dpo, train_ipo, train_kto, train_orpo, train_simpo
from rlhf_course.preference_data import PreferenceDataError, field_text, load_preference_files
from rlhf_course.reward_modeling import reward_model_from, score, train_reward_model

QUESTIONS = [(f"What is {a} plus {b}?", str(a + b)) for a, b in [(2, 3), (4, 1), (5, 2), (3, 3), (6, 1), (2, 2),
                                                                   (7, 1), (1, 8), (4, 4), (3, 5), (6, 2), (2, 7)]]
REFUSAL = "I am not sure, sorry. I hope this helps!"


def _message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def ultrafeedback_record(i: int, question: str, answer: str) -> dict:
    """One record as in ultrafeedback_binarized's train_prefs split."""
    chosen = [_message("user", question), _message("assistant", f"The answer is {answer}.")]
    rejected = [_message("user", question), _message("assistant", REFUSAL)]
    return {"prompt": question, "prompt_id": f"id{i}", "chosen": chosen, "rejected": rejected, "messages": chosen,
            "score_chosen": 9.0, "score_rejected": 2.5}


def hh_record(i: int, question: str, answer: str) -> dict:
    """One record as in hh-rlhf: two full transcripts that share everything but the last reply."""
    opening = "\n\nHuman: Hello.\n\nAssistant: Hi! What can I do for you?" if i % 3 == 0 else ""  # some multi-turn
    shared = f"{opening}\n\nHuman: {question}\n\nAssistant:"
    return {"chosen": f"{shared} {answer}.", "rejected": f"{shared} {REFUSAL}"}


def write_jsonl(path, records: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def hub_files(tmp_path):
    return {"ultrafeedback": write_jsonl(tmp_path / "ultrafeedback.jsonl",
                                         [ultrafeedback_record(i, q, a) for i, (q, a) in enumerate(QUESTIONS)]),
            "hh-rlhf": write_jsonl(tmp_path / "hh.jsonl", [hh_record(i, q, a) for i, (q, a) in enumerate(QUESTIONS)])}


def test_both_schemas_load_in_both_formats(hub_files):
    rows = load_preference_files("ultrafeedback", hub_files["ultrafeedback"], mode="raise")
    assert len(rows) == len(QUESTIONS)
    assert rows[0]["prompt"] == [_message("user", "What is 2 plus 3?")]
    assert rows[0]["chosen"] == [_message("assistant", "The answer is 5.")]
    assert (rows[0]["score_chosen"], rows[0]["score_rejected"], rows[0]["prompt_id"]) == (9.0, 2.5, "id0")
    plain = load_preference_files("HuggingFaceH4/ultrafeedback_binarized", hub_files["ultrafeedback"],
                                  conversational=False, mode="raise")
    assert plain[1]["prompt"] == "What is 4 plus 1?" and plain[1]["rejected"] == REFUSAL

    hh = load_preference_files("hh-rlhf", hub_files["hh-rlhf"], mode="raise")
    assert hh[0]["prompt"] == [_message("user", "Hello."), _message("assistant", "Hi! What can I do for you?"),
                               _message("user", "What is 2 plus 3?")]
    assert hh[1]["prompt"] == [_message("user", "What is 4 plus 1?")]
    assert hh[1]["chosen"] == [_message("assistant", "5.")]
    hh_plain = load_preference_files("hh-rlhf", hub_files["hh-rlhf"], conversational=False, mode="raise")
    record = hh_record(1, *QUESTIONS[1])
    assert hh_plain[1]["prompt"] + hh_plain[1]["chosen"] == record["chosen"], "standard rows rebuild the transcript"


def test_malformed_records_are_named_by_file_record_and_field(tmp_path, hub_files):
    records = [ultrafeedback_record(i, q, a) for i, (q, a) in enumerate(QUESTIONS[:3])]
    records[2]["rejected"] = [_message("user", "What is 5 plus 2?"), _message("user", "Hello?")]
    path = write_jsonl(tmp_path / "bad_uf.jsonl", records)
    with pytest.raises(PreferenceDataError, match=r"^bad_uf\.jsonl, row index 2, field 'rejected': the last "
                                                  r"message is not an assistant reply"):
        load_preference_files("ultrafeedback", path, mode="raise")
    with pytest.warns(UserWarning, match="dropped 1 of 3 records"):
        assert len(load_preference_files("ultrafeedback", path)) == 2  # the hub loader's default: skip and say so

    hh = [hh_record(i, q, a) for i, (q, a) in enumerate(QUESTIONS[:3])]
    hh[1]["rejected"] = hh[1]["chosen"]  # the same transcript twice: nothing to learn from
    path = write_jsonl(tmp_path / "bad_hh.jsonl", hh)
    with pytest.raises(PreferenceDataError, match=r"^bad_hh\.jsonl, row index 1, field 'rejected': chosen and "
                                                  r"rejected are the same"):
        load_preference_files("hh-rlhf", path, mode="raise")

    mixed = tmp_path / "mixed.jsonl"  # `chosen` a message list on one line and a string on the next
    mixed.write_text(json.dumps(records[0]) + "\n" + json.dumps({**records[1], "chosen": "text"}) + "\n")
    with pytest.raises(PreferenceDataError, match=r"^mixed\.jsonl, row index 1, field 'chosen': expected a list of "
                                                  r"messages ending with the assistant's reply; got str"):
        load_preference_files("ultrafeedback", mixed, mode="raise")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(records[0]) + "\n" + '{"prompt": "What is 1 plus 1?", "chosen": [\n')
    with pytest.raises(PreferenceDataError, match=r"^broken\.jsonl: datasets could not read the file as JSON Lines"):
        load_preference_files("ultrafeedback", broken)
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        load_preference_files("hh-rlhf", tmp_path / "missing.jsonl")


# Each stage that reads pairs, given no model at all: the validator must stop it first (online DPO runs train_dpo).
STAGES = {
    "reward model": lambda rows, out: train_reward_model(None, None, rows, get_profile("tiny"), output_dir=out),
    "dpo": lambda rows, out: train_dpo("no/such/model", None, rows, get_profile("tiny"), output_dir=out),
    "ipo": lambda rows, out: train_ipo("no/such/model", None, rows, get_profile("tiny"), output_dir=out),
    "kto": lambda rows, out: train_kto("no/such/model", None, rows, get_profile("tiny"), output_dir=out),
    "orpo": lambda rows, out: train_orpo("no/such/model", None, rows, get_profile("tiny"), output_dir=out),
    "simpo": lambda rows, out: train_simpo("no/such/model", None, rows, get_profile("tiny"), output_dir=out),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("conversational", [True, False])
def test_every_stage_that_reads_pairs_goes_through_the_validator(hub_files, tmp_path, stage, conversational):
    rows = load_preference_files("hh-rlhf", hub_files["hh-rlhf"], conversational=conversational, mode="raise")
    rows[3] = {**rows[3], "rejected": rows[3]["chosen"]}
    with pytest.raises(PreferenceDataError, match="row index 3, field 'rejected': chosen and rejected are the same"):
        STAGES[stage](rows, tmp_path)


def _gap(model, tokenizer, rows) -> float:
    """Mean over pairs of log π(chosen) − log π(rejected)."""
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logprobs(model, tokenizer, prompts, [field_text(r["chosen"]) for r in rows])
    rejected = completion_logprobs(model, tokenizer, prompts, [field_text(r["rejected"]) for r in rows])
    return float((chosen - rejected).mean())


def _margin(model, tokenizer, rows) -> float:
    """Mean over pairs of r(chosen) − r(rejected) by the reward model."""
    prompts = [r["prompt"] for r in rows]
    return float((score(model, tokenizer, prompts, [field_text(r["chosen"]) for r in rows])
                  - score(model, tokenizer, prompts, [field_text(r["rejected"]) for r in rows])).mean())


@pytest.mark.slow
@pytest.mark.parametrize("schema, conversational", [("ultrafeedback", True), ("hh-rlhf", False)])
def test_reward_model_and_dpo_train_on_hub_schema_rows(tiny_policy, hub_files, tmp_path, schema, conversational):
    """A few steps of each stage on the loaded rows: both learn the (easy) preference in them."""
    path, tokenizer = tiny_policy
    rows = load_preference_files(schema, hub_files[schema], conversational=conversational, mode="raise")
    profile = apply_overrides(get_profile("tiny"), [
        "rm.batch_size=4", "rm.grad_accum=1", "rm.epochs=2", "rm.learning_rate=0.001",
        "dpo.batch_size=4", "dpo.grad_accum=1", "dpo.epochs=2", "dpo.learning_rate=0.001"])

    reward_model = reward_model_from(path, profile)
    before = _margin(reward_model, tokenizer, rows)
    rm = train_reward_model(reward_model, tokenizer, rows, profile, output_dir=tmp_path / "rm", progress=False)
    assert rm.log_history[-1]["step"] == 2 * math.ceil(len(rows) / 4)
    assert _margin(rm.model, tokenizer, rows) > before + 0.5, "the reward model learns to rank chosen first"

    from rlhf_course.core.models import load_policy

    before = _gap(load_policy(path, profile), tokenizer, rows)
    dpo = train_dpo(path, tokenizer, rows, profile, output_dir=tmp_path / "dpo", progress=False)
    assert dpo.curve("rewards/accuracies") and all(torch.isfinite(torch.tensor(v)) for _, v in dpo.losses)
    assert _gap(dpo.model, tokenizer, rows) > before + 1.0, "DPO raises chosen over rejected"
    assert (tmp_path / "dpo" / "final" / "model.safetensors").exists()
