"""Lab outcomes are written atomically, read back exactly, and never clobber other files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlhf_course
from rlhf_course.core.results import RESULTS_DIR_ENV, load_all, load_outcome, record_outcome, results_table_markdown


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path / "results"))
    return tmp_path / "results"


def test_round_trip(results_dir):
    path = record_outcome("instruction_tuning", {"win_rate_vs_base": 0.71, "steps": 40, "note": "ok"},
                          profile="tiny", seed=0)
    assert path == results_dir / "instruction_tuning.json"
    record = load_outcome("instruction_tuning")
    assert record["outcome"] == {"win_rate_vs_base": 0.71, "steps": 40, "note": "ok"}
    assert record["profile"] == "tiny" and record["seed"] == 0
    assert record["lab"] == "instruction_tuning"
    assert record["rlhf_course_version"] == rlhf_course.__version__
    assert record["timestamp"].endswith("+00:00")


def test_default_dir_is_results_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(RESULTS_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    assert record_outcome("lab", {"x": 1}) == tmp_path.joinpath("results", "lab.json").relative_to(tmp_path)
    assert load_outcome("lab", tmp_path / "results")["outcome"] == {"x": 1}


def test_rerun_overwrites_same_lab():
    record_outcome("lab", {"x": 1})
    record_outcome("lab", {"x": 2})
    assert load_outcome("lab")["outcome"] == {"x": 2}


def test_scalars_from_numpy_and_torch_are_converted():
    record_outcome("lab", {"a": np.float32(0.5), "b": np.int64(3), "c": torch.tensor(0.25)})
    assert load_outcome("lab")["outcome"] == {"a": 0.5, "b": 3, "c": 0.25}


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None, True, torch.tensor([1.0, 2.0]), object()])
def test_non_json_values_name_the_key(value):
    with pytest.raises(TypeError, match="outcome\\['bad'\\]"):
        record_outcome("lab", {"ok": 1.0, "bad": value})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(TypeError, match="finite"):
        record_outcome("lab", {"loss": value})


def test_failed_record_leaves_no_file(results_dir):
    with pytest.raises(TypeError):
        record_outcome("lab", {"bad": None})
    assert not (results_dir / "lab.json").exists()


def test_never_overwrites_another_labs_file(results_dir):
    results_dir.mkdir(parents=True)
    (results_dir / "lab.json").write_text(json.dumps({"lab": "other", "outcome": {"x": 1}}))
    with pytest.raises(FileExistsError, match="'other'"):
        record_outcome("lab", {"x": 2})
    assert json.loads((results_dir / "lab.json").read_text())["lab"] == "other"


def test_never_overwrites_a_foreign_file(results_dir):
    results_dir.mkdir(parents=True)
    (results_dir / "lab.json").write_text("my notes, not JSON")
    with pytest.raises(FileExistsError, match="not a results file"):
        record_outcome("lab", {"x": 2})
    assert (results_dir / "lab.json").read_text() == "my notes, not JSON"


def test_no_temporary_files_left(results_dir):
    record_outcome("lab", {"x": 1})
    assert [p.name for p in results_dir.iterdir()] == ["lab.json"]


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", 3])
def test_bad_lab_names(name):
    with pytest.raises(ValueError, match="file name"):
        record_outcome(name, {"x": 1})


def test_load_missing_says_what_to_do():
    with pytest.raises(FileNotFoundError, match="record_outcome\\('nope'"):
        load_outcome("nope")


def test_load_all_and_table(results_dir):
    record_outcome("b_lab", {"win_rate": 0.6543}, profile="tiny", seed=1)
    record_outcome("a_lab", {"accuracy": 0.9, "model": "tiny"}, profile="smol", seed=None)
    (results_dir / "timings.json").write_text("{}")  # not a results file: ignored
    records = load_all()
    assert list(records) == ["a_lab", "b_lab"]
    table = results_table_markdown(records)
    assert table.splitlines() == [
        "| lab | metric | value | profile | seed |",
        "|---|---|---|---|---|",
        "| a_lab | accuracy | 0.9 | smol |  |",
        "| a_lab | model | tiny | smol |  |",
        "| b_lab | win_rate | 0.654 | tiny | 1 |",
    ]
    assert "| x | m | 3 |  |  |" in results_table_markdown({"x": {"m": 3}})


outcomes = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(outcome=outcomes, seed=st.one_of(st.none(), st.integers(0, 2**31)))
def test_any_json_outcome_round_trips(outcome, seed):
    record_outcome("prop", outcome, profile="tiny", seed=seed)
    record = load_outcome("prop")
    assert record["outcome"] == outcome and record["seed"] == seed
