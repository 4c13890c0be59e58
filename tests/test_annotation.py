"""Labelling preferences by hand: pairs worth labelling, labels that survive a crash,
a widget driven by clicks, and agreement with the gold reward and the annotators."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import ipywidgets as widgets
import pytest

from rlhf_course.preference_data import annotation as an
from rlhf_course.toyworld import Annotator, make_prompts


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return an.make_annotation_pairs(make_prompts("validation", 8, seed=0), n=10, seed=0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "labels" / "mine.jsonl"


def saved(path: Path) -> list[dict]:
    """The records in a label file, as written."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def button(box: widgets.Widget, description: str) -> widgets.Button:
    """The button with this description anywhere inside ``box``."""
    if isinstance(box, widgets.Button) and box.description == description:
        return box
    for child in getattr(box, "children", ()):
        found = button(child, description)
        if found is not None:
            return found
    return None


def texts(box: widgets.Widget) -> str:
    """Everything the HTML widgets inside ``box`` show, joined."""
    if isinstance(box, widgets.HTML):
        return box.value
    return " ".join(texts(child) for child in getattr(box, "children", ()))


def oracle_label(pair: dict) -> str:
    """What a learner who knows the gold reward picks."""
    hidden = pair["hidden"]
    return "a" if hidden["gold_a"] > hidden["gold_b"] else "b"


# ----------------------------------------------------------------------------- pairs


def test_pairs_are_different_responses_with_stable_ids_and_mixed_margins(pairs):
    assert len(pairs) == 10
    assert all(p["a"] != p["b"] for p in pairs)
    assert len({p["pair_id"] for p in pairs}) == len(pairs)
    margins = [abs(p["hidden"]["gold_a"] - p["hidden"]["gold_b"]) for p in pairs]
    assert all(m > 0 for m in margins)  # no pair is hopeless: gold always prefers one
    assert sum(m >= an.LARGE_MARGIN for m in margins) == 5  # half easy, half hard
    again = an.make_annotation_pairs(make_prompts("validation", 8, seed=0), n=10, seed=0)
    other = an.make_annotation_pairs(make_prompts("validation", 8, seed=0), n=10, seed=1)
    assert [p["pair_id"] for p in again] == [p["pair_id"] for p in pairs]
    assert [p["pair_id"] for p in other] != [p["pair_id"] for p in pairs]


def test_pairs_reject_bad_arguments():
    with pytest.raises(ValueError, match="prompts is empty"):
        an.make_annotation_pairs([], n=3)
    with pytest.raises(ValueError, match="positive integer"):
        an.make_annotation_pairs(make_prompts("validation", 2), n=0)


# ----------------------------------------------------------------------------- session and file


def test_labels_are_on_disk_at_once_and_a_new_session_resumes(pairs, path):
    session = an.AnnotationSession(pairs, path)
    assert session.current is pairs[0] and session.position == 0 and not session.done
    session.label("a")
    session.label("B")  # case does not matter
    session.label("tie")
    assert [(r["pair_id"], r["label"]) for r in saved(path)] == [
        (pairs[0]["pair_id"], "a"), (pairs[1]["pair_id"], "b"), (pairs[2]["pair_id"], "tie")]
    resumed = an.AnnotationSession(pairs, path)
    assert resumed.labels == session.labels
    assert resumed.current is pairs[3] and resumed.position == 3


def test_an_interrupted_session_keeps_every_saved_label_and_resumes(pairs, path):
    session = an.AnnotationSession(pairs, path)
    for choice in ("a", "b", "skip", "a"):
        session.label(choice)
    del session  # no close call: the kernel just dies
    gc.collect()
    intact = path.read_bytes()
    path.write_bytes(intact[:-25])  # the fourth record was cut short mid-write

    with pytest.warns(UserWarning, match="last line was incomplete"):
        resumed = an.AnnotationSession(pairs, path)
    assert resumed.labels == {pairs[0]["pair_id"]: "a", pairs[1]["pair_id"]: "b", pairs[2]["pair_id"]: "skip"}
    assert resumed.current is pairs[3]

    resumed.label("b")  # goes on a fresh line, so the file is whole again
    assert [r["label"] for r in saved(path)] == ["a", "b", "skip", "b"]
    assert an.AnnotationSession(pairs, path).position == 4


def test_a_last_line_without_its_newline_is_kept_and_finished(pairs, path):
    an.AnnotationSession(pairs, path).label("a")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the record, but not its newline, reached the disk
    session = an.AnnotationSession(pairs, path)
    assert session.position == 1
    session.label("b")
    assert [r["label"] for r in saved(path)] == ["a", "b"]


def test_a_broken_line_in_the_middle_is_an_error_naming_file_and_line(pairs, path):
    session = an.AnnotationSession(pairs, path)
    session.label("a")
    session.label("b")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:20], lines[0]]) + "\n")
    before = path.read_bytes()
    with pytest.raises(an.AnnotationFileError, match=r"mine\.jsonl, line 2"):
        an.AnnotationSession(pairs, path)
    assert path.read_bytes() == before


def test_undo_appends_a_retraction_and_nothing_is_rewritten(pairs, path):
    session = an.AnnotationSession(pairs, path)
    session.label("a")
    session.label("b")
    before = path.read_bytes()
    assert session.undo() == pairs[1]["pair_id"]
    assert path.read_bytes().startswith(before)  # append-only
    assert saved(path)[-1] == {**saved(path)[-1], "pair_id": pairs[1]["pair_id"], "undo": True}
    assert session.current is pairs[1] and session.labels == {pairs[0]["pair_id"]: "a"}
    assert an.AnnotationSession(pairs, path).labels == {pairs[0]["pair_id"]: "a"}
    session.label("tie")
    assert an.AnnotationSession(pairs, path).labels == {pairs[0]["pair_id"]: "a", pairs[1]["pair_id"]: "tie"}
    session.undo()
    session.undo()
    assert session.undo() is None and session.position == 0


def test_a_file_made_for_other_pairs_is_refused_and_left_untouched(pairs, path):
    an.AnnotationSession(pairs, path).label("a")
    before = path.read_bytes()
    other_pairs = an.make_annotation_pairs(make_prompts("validation", 8, seed=0), n=10, seed=1)
    with pytest.raises(an.AnnotationFileError, match="another set of pairs.*another path"):
        an.AnnotationSession(other_pairs, path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_label_file_is_refused_and_left_untouched(pairs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(an.AnnotationFileError, match="notes.txt, line 1.*another path"):
        an.AnnotationSession(pairs, notes)
    assert notes.read_text() == "my notes\n"


def test_bad_labels_and_labelling_past_the_end_are_errors(pairs, path):
    session = an.AnnotationSession(pairs[:1], path)
    with pytest.raises(ValueError, match="Unknown label"):
        session.label("c")
    session.label("skip")
    assert session.done and session.current is None
    with pytest.raises(ValueError, match="already labelled"):
        session.label("a")


# ----------------------------------------------------------------------------- widget


def test_clicking_the_buttons_saves_labels_and_moves_on(pairs, path):
    session = an.AnnotationSession(pairs[:3], path)
    box = session.widget()
    assert "pair 1 of 3" in texts(box) and button(box, "Undo last").disabled
    button(box, "A is better").click()
    button(box, "B is better").click()
    assert "pair 3 of 3" in texts(box)
    button(box, "Undo last").click()
    assert "pair 2 of 3" in texts(box)
    button(box, "Tie").click()
    button(box, "B is better").click()
    assert session.done and button(box, "A is better").disabled
    assert "Done" in texts(box) and "1 A, 1 B, 1 tie" in texts(box)
    assert an.AnnotationSession(pairs[:3], path).labels == {
        pairs[0]["pair_id"]: "a", pairs[1]["pair_id"]: "tie", pairs[2]["pair_id"]: "b"}


def test_the_widget_resumes_and_escapes_html(path):
    prompt = make_prompts("validation", 1)[0]
    pairs = [{"pair_id": "x1", "prompt": "<i>what?</i>", "a": "<script>alert(1)</script>", "b": "b & c",
              "hidden": {"prompt": prompt}},
             {"pair_id": "x2", "prompt": "p", "a": "1", "b": "2", "hidden": {"prompt": prompt}}]
    box = an.AnnotationSession(pairs, path).widget()
    shown = texts(box)
    assert "&lt;script&gt;" in shown and "<script>" not in shown and "&lt;i&gt;" in shown and "b &amp; c" in shown
    button(box, "A is better").click()
    assert "pair 2 of 2" in texts(an.AnnotationSession(pairs, path).widget())


# ----------------------------------------------------------------------------- agreement


def label_all(session: an.AnnotationSession, choose) -> None:
    while not session.done:
        session.label(choose(session.current))


def test_an_oracle_learner_agrees_with_gold_and_with_a_noiseless_careful_annotator(pairs, path):
    session = an.AnnotationSession(pairs, path)
    label_all(session, oracle_label)
    assert an.agreement_with_gold(session) == 1.0
    careful = Annotator("careful", temperature=0.0)
    contrarian = Annotator("contrarian", weights={"correct": -2.0, "format": -1.0, "tone": -1.0, "concise": -0.5},
                           temperature=0.0)
    table = an.agreement_with_annotators(session, [careful, contrarian])
    assert table == {"careful": {"with_learner": 1.0, "with_gold": 1.0},
                     "contrarian": {"with_learner": 0.0, "with_gold": 0.0}}


def test_agreement_on_a_hand_built_case_leaves_out_ties_and_skips(pairs, path):
    session = an.AnnotationSession(pairs[:4], path)
    wrong = {"a": "b", "b": "a"}
    for choice in (oracle_label(pairs[0]), wrong[oracle_label(pairs[1])], "tie", "skip"):
        session.label(choice)
    assert an.agreement_with_gold(session) == 0.5


def test_default_annotators_give_plain_numbers_and_a_seed_fixes_them(pairs, path):
    session = an.AnnotationSession(pairs, path)
    label_all(session, oracle_label)
    table = an.agreement_with_annotators(session, seed=3)
    assert set(table) == {"careful", "hasty", "verbose_fan", "phrase_fan"}
    for row in table.values():
        assert set(row) == {"with_learner", "with_gold"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in row.values())
        assert row["with_learner"] == row["with_gold"]  # the learner is the gold reward here
    assert an.agreement_with_annotators(session, seed=3) == table


def test_agreement_needs_some_choices(pairs, path):
    session = an.AnnotationSession(pairs, path)
    session.label("tie")
    with pytest.raises(ValueError, match="label some pairs first"):
        an.agreement_with_gold(session)
    with pytest.raises(ValueError, match="label some pairs first"):
        an.agreement_with_annotators(session)
    assert math.isnan(an._share([]))
