"""Preference data: the adapters map each public schema to TRL's format, the
validator names the row and field of every malformed record, and fuzzing finds
no input that makes it fail any other way. No network: the rows are our own,
written in each dataset's schema."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_course.preference_data import data
from rlhf_course.preference_data import (PreferenceDataError, from_hh_rlhf, from_shp, from_ultrafeedback,
                                         load_preferences, read_preferences_jsonl, validate_preferences,
                                         write_preferences_jsonl)
from rlhf_course.core.profiles import get_profile
from rlhf_course.toyworld import make_preferences, make_prompts


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# ----------------------------------------------------------------------------- HH-RLHF

HH_MULTI_TURN = {
    "chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
              "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.",
    "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
                "\n\nHuman: What is 2+2?\n\nAssistant: Go away.",
}
HH_SINGLE_TURN = {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
                  "rejected": "\n\nHuman: Name a colour.\n\nAssistant: Seven."}


def test_hh_conversational_splits_off_the_multi_turn_prompt():
    (row,) = from_hh_rlhf([HH_MULTI_TURN])
    assert row == {
        "prompt": [user("Hi there"), assistant("Hello! How can I help?"), user("What is 2+2?")],
        "chosen": [assistant("It is 4.")],
        "rejected": [assistant("Go away.")],
    }


def test_hh_standard_rows_reassemble_the_original_transcript():
    rows = from_hh_rlhf([HH_MULTI_TURN, HH_SINGLE_TURN], conversational=False)
    for row, record in zip(rows, [HH_MULTI_TURN, HH_SINGLE_TURN]):
        assert row["prompt"].endswith("\n\nAssistant:")
        assert row["prompt"] + row["chosen"] == record["chosen"]
        assert row["prompt"] + row["rejected"] == record["rejected"]
    assert rows[1]["chosen"] == " Blue."


def test_hh_rows_validate_in_both_formats():
    for conversational in (True, False):
        rows = from_hh_rlhf([HH_MULTI_TURN, HH_SINGLE_TURN], conversational=conversational)
        assert validate_preferences(rows).ok


def test_hh_pairs_that_diverge_before_the_last_turn_are_an_error_or_skipped():
    diverged = dict(HH_MULTI_TURN, rejected=HH_MULTI_TURN["rejected"].replace("Hello!", "Hmm."))
    longer = dict(HH_SINGLE_TURN, rejected=HH_SINGLE_TURN["rejected"] + "\n\nHuman: Why?\n\nAssistant: Because.")
    for bad in (diverged, longer):
        with pytest.raises(PreferenceDataError, match=r"Anthropic/hh-rlhf, row index 1, field 'rejected': .*differ"):
            from_hh_rlhf([HH_SINGLE_TURN, bad])
    with pytest.warns(UserWarning, match="dropped 2 of 3 records"):
        rows = from_hh_rlhf([diverged, HH_SINGLE_TURN, longer], mode="skip")
    assert len(rows) == 1 and rows[0]["chosen"] == [assistant("Blue.")]


def test_split_hh_pair_can_be_called_on_its_own():
    prompt, chosen, rejected = data.split_hh_pair(HH_SINGLE_TURN["chosen"], HH_SINGLE_TURN["rejected"])
    assert (prompt, chosen, rejected) == ("\n\nHuman: Name a colour.\n\nAssistant:", " Blue.", " Seven.")
    with pytest.raises(PreferenceDataError, match="field 'rejected': chosen and rejected differ"):
        data.split_hh_pair(HH_SINGLE_TURN["chosen"], HH_MULTI_TURN["rejected"])


def test_hh_record_that_is_not_a_transcript_is_named():
    with pytest.raises(PreferenceDataError, match=r"row index 0, field 'chosen': .*no '\\n\\nAssistant:'"):
        from_hh_rlhf([{"chosen": "just text", "rejected": "other text"}])
    with pytest.raises(PreferenceDataError, match=r"row index 0, field 'rejected': the field is missing"):
        from_hh_rlhf([{"chosen": HH_SINGLE_TURN["chosen"]}])


# ----------------------------------------------------------------------------- SHP

SHP_RECORD = {
    "post_id": "himmnu", "domain": "askculinary_train", "upvote_ratio": 0.98,
    "history": "How long should I rest a steak?",
    "c_root_id_A": "fv1", "c_root_id_B": "fv2", "created_at_utc_A": 1, "created_at_utc_B": 2,
    "score_A": 52, "score_B": 7,
    "human_ref_A": "About five minutes, tented with foil.",
    "human_ref_B": "Never rest it.",
    "labels": 1, "seconds_difference": 3.0, "score_ratio": 7.43,
}


def test_shp_label_picks_chosen_and_metadata_is_kept():
    (a_wins,) = from_shp([SHP_RECORD], conversational=False)
    assert a_wins == {"prompt": SHP_RECORD["history"], "chosen": SHP_RECORD["human_ref_A"],
                      "rejected": SHP_RECORD["human_ref_B"], "post_id": "himmnu",
                      "domain": "askculinary_train", "score_ratio": 7.43,
                      "score_chosen": 52, "score_rejected": 7}
    (b_wins,) = from_shp([dict(SHP_RECORD, labels=0)])
    assert b_wins["prompt"] == [user(SHP_RECORD["history"])]
    assert b_wins["chosen"] == [assistant("Never rest it.")]
    assert b_wins["rejected"] == [assistant("About five minutes, tented with foil.")]
    assert (b_wins["score_chosen"], b_wins["score_rejected"]) == (7, 52)
    assert validate_preferences([a_wins]).ok and validate_preferences([b_wins]).ok


def test_shp_bad_label_is_named():
    with pytest.raises(PreferenceDataError, match=r"stanfordnlp/SHP, row index 0, field 'labels': .*got 2"):
        from_shp([dict(SHP_RECORD, labels=2)])


# ----------------------------------------------------------------------------- UltraFeedback

UF_RECORD = {
    "prompt": "Write a haiku about rain.",
    "prompt_id": "abc123",
    "chosen": [user("Write a haiku about rain."), assistant("Soft rain on the roof\n...")],
    "rejected": [user("Write a haiku about rain."), assistant("Rain is wet.")],
    "messages": [user("Write a haiku about rain."), assistant("Soft rain on the roof\n...")],
    "score_chosen": 8.5,
    "score_rejected": 3.0,
}


def test_ultrafeedback_separates_the_prompt_from_the_final_assistant_turn():
    (row,) = from_ultrafeedback([UF_RECORD])
    assert row == {"prompt": [user("Write a haiku about rain.")],
                   "chosen": [assistant("Soft rain on the roof\n...")],
                   "rejected": [assistant("Rain is wet.")],
                   "prompt_id": "abc123", "score_chosen": 8.5, "score_rejected": 3.0}
    (plain,) = from_ultrafeedback([UF_RECORD], conversational=False)
    assert (plain["prompt"], plain["chosen"]) == ("Write a haiku about rain.", "Soft rain on the roof\n...")
    assert validate_preferences([row]).ok and validate_preferences([plain]).ok


def test_ultrafeedback_does_not_share_messages_with_its_input():
    record = copy.deepcopy(UF_RECORD)
    (row,) = from_ultrafeedback([record])
    row["prompt"][0]["content"] = "changed"
    row["chosen"][0]["content"] = "changed"
    assert record == UF_RECORD


def test_ultrafeedback_multi_turn_needs_conversational_and_diverging_prompts_are_named():
    multi = dict(UF_RECORD, chosen=[user("a"), assistant("b"), user("c"), assistant("d")],
                 rejected=[user("a"), assistant("b"), user("c"), assistant("e")])
    assert from_ultrafeedback([multi])[0]["prompt"] == [user("a"), assistant("b"), user("c")]
    with pytest.raises(PreferenceDataError, match="row index 0, field 'chosen': .*conversational=True"):
        from_ultrafeedback([multi], conversational=False)
    with pytest.raises(PreferenceDataError, match="row index 0, field 'rejected': .*differ"):
        from_ultrafeedback([dict(multi, rejected=[user("x"), assistant("y")])])


# ----------------------------------------------------------------------------- load_preferences


def test_unknown_dataset_lists_the_supported_ones_without_the_network(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("touched the hub"))
    with pytest.raises(ValueError, match="Unknown preference dataset 'imdb'") as error:
        load_preferences("imdb", "train")
    for name in ("hh-rlhf", "Anthropic/hh-rlhf", "stanfordnlp/SHP", "HuggingFaceH4/ultrafeedback_binarized"):
        assert name in str(error.value)
    with pytest.raises(ValueError, match="no split 'train'; use one of train_prefs, test_prefs"):
        load_preferences("ultrafeedback", "train")


def test_load_preferences_dispatches_samples_and_cleans(monkeypatch):
    """With the hub replaced by an in-memory dataset: the right adapter, ``n`` rows, bad rows dropped."""
    import datasets

    empty = dict(HH_SINGLE_TURN, chosen="\n\nHuman: Name a colour.\n\nAssistant:")
    records = [HH_SINGLE_TURN, HH_MULTI_TURN] * 5
    calls = []

    def fake_load_dataset(path, split):
        calls.append((path, split))
        return datasets.Dataset.from_list(records)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_preferences("anthropic/HH-RLHF", "test", n=4, seed=1, conversational=False)
    assert calls == [("Anthropic/hh-rlhf", "test")] and len(rows) == 4
    assert all(isinstance(r["prompt"], str) for r in rows)
    records.append(empty)
    with pytest.warns(UserWarning, match="empty response: 1"):
        rows = load_preferences("hh-rlhf", "train")
    assert len(rows) == 10 and isinstance(rows[0]["prompt"], list)


# ----------------------------------------------------------------------------- the validator

GOOD_STANDARD = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven.", "annotator": "careful"}
GOOD_CONVERSATIONAL = {"prompt": [user("Name a colour.")], "chosen": [assistant("Blue.")],
                       "rejected": [assistant("Seven.")]}

# (change to a good row, the field the message must name, words the message must contain)
MALFORMED = [
    (GOOD_STANDARD, {"chosen": None}, "chosen", "the field is missing"),
    (GOOD_STANDARD, {"prompt": None}, "prompt", "the field is missing"),
    (GOOD_STANDARD, {"chosen": 3}, "chosen", "got int"),
    (GOOD_STANDARD, {"rejected": {"text": "x"}}, "rejected", "got dict"),
    (GOOD_STANDARD, {"chosen": [assistant("Blue.")]}, "chosen", "but chosen is a list of messages"),
    (GOOD_CONVERSATIONAL, {"rejected": "Seven."}, "rejected", "but rejected is a string"),
    (GOOD_CONVERSATIONAL, {"prompt": [{"content": "hi"}]}, "prompt", "message 0 has no 'role'"),
    (GOOD_CONVERSATIONAL, {"chosen": [{"role": "assistant"}]}, "chosen", "message 0 has no 'content'"),
    (GOOD_CONVERSATIONAL, {"prompt": [{"role": "Human", "content": "hi"}]}, "prompt", "role 'Human'"),
    (GOOD_CONVERSATIONAL, {"prompt": ["hi"]}, "prompt", "message 0 is a str, not a dict"),
    (GOOD_CONVERSATIONAL, {"prompt": [user("hi"), assistant("hello")]}, "prompt",
     "the last message is from 'assistant', not from 'user'"),
    (GOOD_CONVERSATIONAL, {"chosen": [user("Blue.")]}, "chosen", "the first message is from 'user'"),
    (GOOD_CONVERSATIONAL, {"rejected": []}, "rejected", "the message list is empty"),
    (GOOD_CONVERSATIONAL, {"chosen": [assistant(7)]}, "chosen", "content of type int"),
    (GOOD_STANDARD, {"chosen": ""}, "chosen", "the response is empty"),
    (GOOD_STANDARD, {"rejected": " \n\t"}, "rejected", "the response is empty"),
    (GOOD_CONVERSATIONAL, {"chosen": [assistant("  ")]}, "chosen", "the response is empty"),
    (GOOD_STANDARD, {"prompt": "   "}, "prompt", "the prompt is empty"),
    (GOOD_STANDARD, {"rejected": "Blue. "}, "rejected", "chosen and rejected are the same"),
    (GOOD_CONVERSATIONAL, {"rejected": [assistant("Blue.")]}, "rejected", "chosen and rejected are the same"),
]


def _with(row: dict, change: dict) -> dict:
    """A copy of ``row`` with fields replaced, or removed where the new value is None."""
    new = {k: v for k, v in row.items() if change.get(k, 0) is not None}
    new.update({k: v for k, v in change.items() if v is not None})
    return new


@pytest.mark.parametrize("good, change, field, words", MALFORMED)
def test_each_kind_of_malformed_row_is_named_by_row_and_field(good, change, field, words):
    rows = [good, good, _with(good, change)]
    with pytest.raises(PreferenceDataError) as error:
        validate_preferences(rows, source="prefs.jsonl")
    message = str(error.value)
    assert message.startswith(f"prefs.jsonl, row index 2, field '{field}': ")
    assert words in message
    assert "mode='skip'" in message  # and says what to do


def test_a_row_that_is_not_a_dict_is_named():
    with pytest.raises(PreferenceDataError, match=r"^data, row index 1: the row is a list, not a dict"):
        validate_preferences([GOOD_STANDARD, ["a", "b"]])
    with pytest.raises(TypeError, match=r"expected a list of rows .*Wrap a single row in a list"):
        validate_preferences(GOOD_STANDARD)


def test_the_message_says_what_to_do():
    with pytest.raises(PreferenceDataError) as error:
        validate_preferences([_with(GOOD_STANDARD, {"chosen": ""})] * 13, source="data.jsonl")
    assert str(error.value) == ("data.jsonl, row index 0, field 'chosen': the response is empty. Remove the row or "
                                "fill it in; validate_preferences(..., mode='skip') drops such rows and reports "
                                "them.")


def test_long_prompts_are_counted_in_words_or_tokens_and_the_message_says_which():
    row = {"prompt": "one two three four five", "chosen": "a", "rejected": "b"}
    assert validate_preferences([row], max_prompt_tokens=5).ok
    with pytest.raises(PreferenceDataError, match=r"row index 0, field 'prompt': the prompt has 5 whitespace-separated "
                                                  r"words .*max_prompt_tokens=4"):
        validate_preferences([row], max_prompt_tokens=4)

    class CharacterTokenizer:
        """One token per character; a chat template that adds two marker tokens per message."""

        chat_template = "(a template)"

        def encode(self, text, add_special_tokens=True):
            return list(text)

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "".join("<>" + m["content"] for m in messages) + ("<>" if add_generation_prompt else "")

    tokenizer = CharacterTokenizer()
    with pytest.raises(PreferenceDataError, match=r"the prompt has 23 tokens, counted with the tokenizer"):
        validate_preferences([row], max_prompt_tokens=22, tokenizer=tokenizer)
    conversational = dict(GOOD_CONVERSATIONAL, prompt=[user("abc")])  # <>abc<> is 7 tokens
    assert validate_preferences([conversational], max_prompt_tokens=7, tokenizer=tokenizer).ok
    report = validate_preferences([conversational], max_prompt_tokens=6, tokenizer=tokenizer, mode="skip")
    assert report.length_unit == "tokens" and report.counts() == {"prompt too long": 1}


def test_skip_mode_keeps_valid_rows_and_reports_every_dropped_one():
    rows = [GOOD_STANDARD, _with(GOOD_STANDARD, {"chosen": ""}), GOOD_CONVERSATIONAL, 42,
            _with(GOOD_STANDARD, {"rejected": "Blue."}), _with(GOOD_STANDARD, {"rejected": "  "})]
    before = copy.deepcopy(rows)
    report = validate_preferences(rows, source="mixed.jsonl", mode="skip")
    assert rows == before  # the input is untouched
    assert report.rows == [GOOD_STANDARD]  # the conversational row is not in the first good row's format
    assert report.rows[0] is rows[0] and "annotator" in report.rows[0]  # metadata kept
    assert [(p.row, p.field, p.reason) for p in report.dropped] == [
        (1, "chosen", "empty response"), (2, "prompt", "mixed formats"), (3, None, "not a dict"),
        (4, "rejected", "identical responses"), (5, "rejected", "empty response")]
    assert report.counts() == {"empty response": 2, "mixed formats": 1, "not a dict": 1, "identical responses": 1}
    assert report.summary() == ("mixed.jsonl: 6 rows checked, 1 kept, 5 dropped.\n"
                                "  empty response: 2 (row indices 1, 5)\n"
                                "  mixed formats: 1 (row index 2)\n"
                                "  not a dict: 1 (row index 3)\n"
                                "  identical responses: 1 (row index 4)")
    assert "row index 4, field 'rejected'" in report.dropped[3].message("mixed.jsonl")


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="mode must be one of 'raise', 'skip'"):
        validate_preferences([GOOD_STANDARD], mode="drop")


@pytest.mark.parametrize("conversational", [False, True])
def test_toy_world_preferences_validate_cleanly(conversational):
    rows = make_preferences(make_prompts("train", 60, seed=0), pairs_per_prompt=2, conversational=conversational)
    report = validate_preferences(rows, max_prompt_tokens=get_profile("tiny").max_prompt_tokens)
    assert report.ok and len(report.rows) == len(rows) > 100


# ----------------------------------------------------------------------------- JSON Lines


def test_jsonl_round_trip_is_atomic_and_keeps_metadata(tmp_path):
    rows = [GOOD_STANDARD, GOOD_CONVERSATIONAL, {"prompt": "é ✓", "chosen": "ß", "rejected": "日本"}]
    path = write_preferences_jsonl(rows, tmp_path / "sub" / "prefs.jsonl")
    assert read_preferences_jsonl(path) == rows
    write_preferences_jsonl(rows[:1], path)  # overwrites, leaves no temporary file behind
    assert read_preferences_jsonl(path) == rows[:1]
    assert [p.name for p in path.parent.iterdir()] == ["prefs.jsonl"]


def test_jsonl_with_an_unserialisable_row_leaves_the_old_file(tmp_path):
    path = write_preferences_jsonl([GOOD_STANDARD], tmp_path / "prefs.jsonl")
    with pytest.raises(PreferenceDataError, match=r"^prefs\.jsonl, row index 1, field 'prompt': a value of type "
                                                  r"object cannot be written as JSON\. .*earlier file"):
        write_preferences_jsonl([GOOD_STANDARD, {"prompt": object()}], path)
    assert read_preferences_jsonl(path) == [GOOD_STANDARD]
    assert [p.name for p in tmp_path.iterdir()] == ["prefs.jsonl"]


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD_STANDARD) + "\n\n" + '{"prompt": "x", "chosen": \n', encoding="utf-8")
    with pytest.raises(PreferenceDataError, match=r"^broken\.jsonl, line 3: not valid JSON"):
        read_preferences_jsonl(path)
    path.write_text(json.dumps(GOOD_STANDARD) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(PreferenceDataError, match=r"^broken\.jsonl, line 2: a JSON list, not an object"):
        read_preferences_jsonl(path)


# ----------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
# Near-valid pieces reach the deeper checks more often than arbitrary JSON does.
messages = st.lists(
    st.fixed_dictionaries({}, optional={"role": st.sampled_from(data.ROLES + ("Human", "")) | json_values,
                                        "content": st.text(max_size=8) | json_values}),
    max_size=3,
)
field_values = st.text(max_size=8) | messages | json_values
json_rows = (json_values
             | st.dictionaries(st.sampled_from(data.FIELDS + ("meta",)), field_values, max_size=4)
             | st.fixed_dictionaries({name: field_values for name in data.FIELDS}, optional={"meta": json_values}))


@FUZZ
@given(rows=st.lists(json_rows, max_size=4), max_prompt_tokens=st.none() | st.integers(0, 5))
def test_fuzz_validator_raises_only_preference_data_errors_and_never_mutates(rows, max_prompt_tokens):
    before = copy.deepcopy(rows)
    try:
        validate_preferences(rows, max_prompt_tokens=max_prompt_tokens)
    except PreferenceDataError as error:
        assert ", row " in str(error)
    report = validate_preferences(rows, max_prompt_tokens=max_prompt_tokens, mode="skip")
    assert len(report.rows) + len(report.dropped) == report.n_checked == len(rows)
    assert rows == before


@FUZZ
@given(rows=st.lists(json_values, max_size=3))
def test_fuzz_adapters_raise_only_preference_data_errors(rows):
    for adapter in (from_hh_rlhf, from_shp, from_ultrafeedback):
        try:
            adapter(rows)
        except PreferenceDataError:
            pass


words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(str.strip)


@st.composite
def valid_rows(draw, conversational: bool) -> dict:
    """A well-formed row, standard or conversational, with optional metadata."""
    chosen = draw(words)
    rejected = draw(words.filter(lambda text: text.strip() != chosen.strip()))
    prompt = draw(words)
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if conversational:
        history = draw(st.lists(st.tuples(words, words), max_size=2))
        turns = [m for q, a in history for m in (user(q), assistant(a))]
        system = [{"role": "system", "content": draw(st.text(max_size=8))}] if draw(st.booleans()) else []
        row = {"prompt": system + turns + [user(prompt)], "chosen": [assistant(chosen)],
               "rejected": [assistant(rejected)]}
    row.update(draw(st.dictionaries(st.text(max_size=5).filter(lambda k: k not in data.FIELDS), json_values,
                                    max_size=2)))
    return row


valid_datasets = st.booleans().flatmap(lambda conversational: st.lists(valid_rows(conversational), max_size=4))


@FUZZ
@given(rows=valid_datasets)
def test_fuzz_valid_rows_always_pass(rows):
    report = validate_preferences(rows, max_prompt_tokens=10_000)
    assert report.ok and report.rows == rows


# ----------------------------------------------------------------------------- files as a new user makes them

def _jsonl_with_blank_lines(rows: list, blanks: list[int]) -> tuple[bytes, list[int]]:
    """JSON Lines bytes with ``blanks[i]`` blank lines before row i; also each row's 1-based line."""
    out, lines, number = b"", [], 0
    for row, blank in zip(rows, blanks, strict=True):
        out += b"\n" * blank
        number += blank + 1
        out += json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"
        lines.append(number)
    return out, lines


one_format_rows = st.booleans().flatmap(lambda conversational: st.lists(valid_rows(conversational), min_size=1,
                                                                         max_size=5))


@FUZZ
@given(rows=one_format_rows, data=st.data())
def test_fuzz_a_bad_row_in_a_file_is_named_by_its_line_as_an_editor_shows_it(tmp_path_factory, rows, data):
    blanks = data.draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows)))
    bad = data.draw(st.integers(0, len(rows) - 1))
    rows = copy.deepcopy(rows)
    rows[bad]["chosen"] = copy.deepcopy(rows[bad]["rejected"])
    text, lines = _jsonl_with_blank_lines(rows, blanks)
    path = tmp_path_factory.mktemp("lines") / "prefs.jsonl"
    path.write_bytes(text)
    read = read_preferences_jsonl(path)
    assert read == rows and read.lines == lines
    with pytest.raises(PreferenceDataError, match=rf"^prefs\.jsonl, line {lines[bad]}, field 'rejected': chosen "
                                                  "and rejected are the same"):
        validate_preferences(read)
    report = validate_preferences(read, mode="skip")
    assert f"identical responses: 1 (line {lines[bad]})" in report.summary()
    assert "row index" in str(validate_preferences(read[:], mode="skip").dropped[0].message("x")), \
        "a list made from the rows no longer knows their lines"


@FUZZ
@given(rows=one_format_rows, data=st.data())
def test_fuzz_a_byte_that_is_not_utf8_is_named_by_file_and_line(tmp_path_factory, rows, data):
    blanks = data.draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows)))
    bad = data.draw(st.integers(0, len(rows) - 1))
    byte = data.draw(st.sampled_from([b"\xe9", b"\xff", b"\x92", b"\xc3("]))  # Latin-1 é, junk, cp1252 quote
    rows = copy.deepcopy(rows)
    rows[bad]["annotator"] = "MARK"
    text, lines = _jsonl_with_blank_lines(rows, blanks)
    path = tmp_path_factory.mktemp("encoding") / "export.jsonl"
    path.write_bytes(text.replace(b"MARK", byte, 1))
    with pytest.raises(PreferenceDataError, match=rf"^export\.jsonl, line {lines[bad]}: byte 0x.. at column \d+ is "
                                                  r"not UTF-8 .*Save the file as UTF-8"):
        read_preferences_jsonl(path)


def test_a_spreadsheets_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "excel.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_STANDARD).encode() + b"\r\n")
    assert read_preferences_jsonl(path) == [GOOD_STANDARD]


@FUZZ
@given(standard=st.lists(valid_rows(False), min_size=1, max_size=4),
       conversational=st.lists(valid_rows(True), min_size=1, max_size=4), data=st.data())
def test_fuzz_mixed_formats_are_refused_before_arrow_sees_them(standard, conversational, data):
    """Whatever the order, the first row whose format differs from the first row's is named."""
    rows = data.draw(st.permutations(standard + conversational))
    first_other = next(i for i, row in enumerate(rows) if isinstance(row["prompt"], str) !=
                       isinstance(rows[0]["prompt"], str))
    with pytest.raises(PreferenceDataError, match=rf"^data, row index {first_other}, field 'prompt': this row is "
                                                  r".* but the first row \(row index 0\) is .*one format"):
        validate_preferences(rows)
    report = validate_preferences(rows, mode="skip")
    assert report.counts() == {"mixed formats": len(rows) - len(report.rows)}
    assert all(isinstance(row["prompt"], str) == isinstance(rows[0]["prompt"], str) for row in report.rows)


@FUZZ
@given(rows=st.lists(json_rows, max_size=4))
def test_fuzz_rows_that_pass_always_make_an_arrow_dataset(rows):
    from datasets import Dataset

    kept = validate_preferences(rows, mode="skip").rows
    Dataset.from_list([{name: row[name] for name in data.FIELDS} for row in kept])


class _DataFrameLike:
    """What matters of a pandas DataFrame here: it iterates over its column names."""

    columns = ["prompt", "chosen", "rejected"]

    def __iter__(self):
        return iter(self.columns)

    def to_dict(self, orient):
        return []


@pytest.mark.parametrize("rows, words", [
    (None, "got None. Pass the rows themselves"),
    (3, "got a value of type int, which is not iterable"),
    ("prefs.jsonl", "got a str. To read a file, call read_preferences_jsonl(path)"),
    (GOOD_STANDARD, "got one dict. Wrap a single row in a list: [row]"),
    (_DataFrameLike(), "iterates over its column names. Pass df.to_dict('records')"),
])
def test_something_other_than_rows_is_a_type_error_that_says_what_to_pass(tmp_path, rows, words):
    calls = [lambda: validate_preferences(rows), lambda: data.check_training_rows(rows),
             lambda: from_hh_rlhf(rows), lambda: write_preferences_jsonl(rows, tmp_path / "out.jsonl")]
    for call in calls:
        with pytest.raises(TypeError, match=r"expected a list of (rows \(dicts with 'prompt', 'chosen' and "
                                            r"'rejected'\)|records \(dicts\) of the dataset); ") as error:
            call()
        assert words in str(error.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_trainer_gets_at_least_one_row():
    with pytest.raises(PreferenceDataError, match="^preference data: no rows; training needs at least one"):
        data.check_training_rows([])
    assert data.check_training_rows(iter([GOOD_STANDARD])) == [GOOD_STANDARD]


# ----------------------------------------------------------------------------- writing what the user has

def _strict_json(line: str):
    """``json.loads`` that refuses NaN and Infinity, which Python's json accepts but JSON does not."""
    return json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))


numpy_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False, width=32).map(np.float32),
    st.floats(allow_nan=True, allow_infinity=False).map(np.float64),
    st.integers(-2**31, 2**31 - 1).map(np.int64), st.booleans().map(np.bool_),
    st.floats(allow_nan=True, allow_infinity=False),
)


@FUZZ
@given(scores=st.lists(numpy_numbers, min_size=1, max_size=4))
def test_fuzz_numpy_scores_and_nan_are_written_as_json(tmp_path_factory, scores):
    rows = [dict(GOOD_STANDARD, score=score, scores=np.array([score, 1.0])) for score in scores]
    path = write_preferences_jsonl(rows, tmp_path_factory.mktemp("numpy") / "scored.jsonl")
    written = [_strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row, score in zip(written, scores, strict=True):
        expected = None if np.isnan(score) else score.item() if isinstance(score, np.generic) else score
        assert row["score"] == expected and type(row["score"]) is type(expected)
        assert row["scores"][1] == 1.0
    assert read_preferences_jsonl(path) == written


@pytest.mark.parametrize("bad, words", [
    ({"score": float("inf")}, "field 'score': the value is inf, which JSON cannot represent"),
    ({"score": np.float32("-inf")}, "field 'score': the value is -inf"),
    ({"chosen": "caf\udce9"}, "field 'chosen': character '\\udce9' at position 3 cannot be written as UTF-8"),
    ({"meta": {"notes": ["ok", "\ud800"]}}, "field 'meta': character '\\ud800'"),
])
def test_a_row_that_cannot_be_written_is_named_and_the_earlier_file_kept(tmp_path, bad, words):
    path = write_preferences_jsonl([GOOD_STANDARD], tmp_path / "prefs.jsonl")
    before = path.read_bytes()
    with pytest.raises(PreferenceDataError) as error:
        write_preferences_jsonl([GOOD_STANDARD, GOOD_STANDARD, dict(GOOD_STANDARD, **bad)], path)
    assert str(error.value).startswith("prefs.jsonl, row index 2, ") and words in str(error.value)
    assert "earlier file" in str(error.value)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["prefs.jsonl"]


# ----------------------------------------------------------------------------- the trainers' data path

class TemplateTokenizer:
    """Just what building a training dataset needs: the tiny model's chat template, as text."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        text = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")


@pytest.mark.parametrize("change, words", [
    ({"chosen": None}, "row index 1, field 'chosen': the field is missing"),
    ({"rejected": 3}, "row index 1, field 'rejected': expected a string or a list of messages; got int"),
    (GOOD_CONVERSATIONAL, "row index 1, field 'prompt': this row is a list of messages"),
    ({"rejected": " Blue.\n"}, "row index 1, field 'rejected': chosen and rejected are the same"),
    ({"chosen": "  "}, "row index 1, field 'chosen': the response is empty"),
])
def test_the_reward_model_path_validates_its_rows(change, words):
    from rlhf_course.preference_data import to_reward_dataset

    rows = [GOOD_STANDARD, _with(GOOD_STANDARD, change)]
    with pytest.raises(PreferenceDataError, match=r"^preference data, ") as error:
        to_reward_dataset(rows, TemplateTokenizer())
    assert words in str(error.value)
    with pytest.raises(TypeError, match="got None"):
        to_reward_dataset(None, TemplateTokenizer())


@FUZZ
@given(rows=st.lists(valid_rows(False), min_size=1, max_size=4))
def test_fuzz_the_reward_model_path_takes_conversational_rows_like_standard_ones(rows):
    from rlhf_course.preference_data import to_reward_dataset

    rows = [{name: row[name] for name in data.FIELDS} for row in rows]
    conversational = [{"prompt": [user(r["prompt"])], "chosen": [assistant(r["chosen"])],
                       "rejected": [assistant(r["rejected"])]} for r in rows]
    tokenizer = TemplateTokenizer()
    assert to_reward_dataset(conversational, tokenizer).to_list() == to_reward_dataset(rows, tokenizer).to_list()
