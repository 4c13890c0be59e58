"""The run layout: one place for every run, a cache of shared models keyed by their settings, and the time ledger."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rlhf_course.core import results, runs


def test_runs_root_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(runs.RUNS_ENV, raising=False)
    here = runs.runs_root()
    monkeypatch.chdir(tmp_path)
    assert runs.runs_root() == here and here.is_absolute()
    assert here == Path(runs.__file__).resolve().parents[2] / "runs", "a source checkout keeps its runs at its root"
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "elsewhere"))
    assert runs.runs_root() == tmp_path / "elsewhere"
    assert runs.lab_dir("ppo") == tmp_path / "elsewhere" / "labs" / "ppo"


def test_shared_folders_are_keyed_by_every_setting():
    a = runs.shared_dir("sft", {"seed": 0, "sft": {"epochs": 4, "lr": 1e-3}})
    assert a == runs.shared_dir("sft", {"sft": {"lr": 1e-3, "epochs": 4}, "seed": 0}), "key order must not matter"
    assert a != runs.shared_dir("sft", {"seed": 1, "sft": {"epochs": 4, "lr": 1e-3}})
    assert a != runs.shared_dir("rm", {"seed": 0, "sft": {"epochs": 4, "lr": 1e-3}})
    assert a.parent.name == "shared" and a.name.startswith("sft-")


def _trainer(calls: list[int], fail: bool = False):
    def train(folder: Path) -> dict:
        calls.append(1)
        (folder / "final").mkdir(parents=True, exist_ok=True)
        (folder / "final" / "weights").write_text(str(len(calls)))
        if fail:
            raise KeyboardInterrupt("killed half-way")
        return {"log_history": [{"loss": 1.0}]}
    return train


def test_a_shared_model_is_trained_once_and_kept_when_settings_change(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))
    calls: list[int] = []
    path, record = runs.cached("toy", {"n": 1}, _trainer(calls), 0)
    again, record_again = runs.cached("toy", {"n": 1}, _trainer(calls), 0)
    assert (path, len(calls)) == (again, 1) and record_again["log_history"] == [{"loss": 1.0}]
    assert record["settings"] == {"n": 1} and record["seconds"] >= 0
    other, _ = runs.cached("toy", {"n": 2}, _trainer(calls), 0)
    assert len(calls) == 2 and other != path
    assert (path / "weights").read_text() == "1", "a model trained with other settings must not be overwritten"


def test_a_run_killed_half_way_is_trained_again(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        runs.cached("toy", {"n": 1}, _trainer(calls, fail=True), 0)
    assert runs.read_record(runs.shared_dir("toy", {"n": 1})) is None, "no record for a model that was not finished"
    path, _ = runs.cached("toy", {"n": 1}, _trainer(calls), 0)
    assert len(calls) == 2 and (path / "weights").read_text() == "2"


def test_an_explicit_folder_is_retrained_when_its_settings_differ(tmp_path):
    calls: list[int] = []
    runs.cached("toy", {"n": 1}, _trainer(calls), 0, folder=tmp_path / "mine")
    runs.cached("toy", {"n": 1}, _trainer(calls), 0, folder=tmp_path / "mine")
    runs.cached("toy", {"n": 2}, _trainer(calls), 0, folder=tmp_path / "mine")
    assert len(calls) == 2 and runs.read_record(tmp_path / "mine")["settings"] == {"n": 2}


def test_record_of_a_model_saved_elsewhere_says_what_to_call(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"was not saved by my_checkpoint\. Call my_checkpoint"):
        runs.record_of(tmp_path / "final", "my_checkpoint")


def test_the_ledger_counts_only_the_outermost_category(monkeypatch):
    monkeypatch.setattr(results, "_LEDGER", {})
    with results.spending("shared models"):
        with results.spending("sampling"):
            time.sleep(0.3)
    with results.spending("sampling"):
        time.sleep(0.15)
    spent = results.seconds_spent()
    assert set(spent) == {"wall", "cpu", "shared models", "sampling"}
    assert spent["shared models"] >= 0.3 and 0.1 <= spent["sampling"] < 0.3
    assert spent["wall"] >= spent["shared models"]


def test_a_lab_record_says_what_the_lab_cost(tmp_path, monkeypatch):
    monkeypatch.setenv(results.RESULTS_DIR_ENV, str(tmp_path))
    path = results.record_outcome("lab", {"x": 1})
    seconds = json.loads(path.read_text())["seconds"]
    assert seconds["wall"] > 0 and seconds["cpu"] > 0


def test_a_shared_model_trains_from_its_seed_and_leaves_the_callers_random_state_alone(tmp_path, monkeypatch):
    import random

    import torch

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))
    draws = []

    def train(folder: Path) -> dict:
        (folder / "final").mkdir(parents=True)
        draws.append((torch.rand(1).item(), random.random()))
        return {}

    for settings, before in (({"n": 1}, 1), ({"n": 2}, 2)):  # the caller's state differs before each
        torch.manual_seed(before)
        random.seed(before)
        expected = (torch.rand(1).item(), random.random())
        torch.manual_seed(before)
        random.seed(before)
        runs.cached("toy", settings, train, seed=7)
        assert (torch.rand(1).item(), random.random()) == expected, "the caller's random state must not move"
    assert draws[0] == draws[1], "a shared model must train from its own seed, whatever the caller did before"


def test_quietly_outside_a_notebook_changes_nothing(capsys):
    assert not runs.in_notebook()
    with runs.quietly("Training the shared sft model"):
        print("a line the terminal shows")
    assert capsys.readouterr().out == "a line the terminal shows\n"


# A lab's training as a notebook kernel runs it: a shared model trained in a block that prints, warns and shows
# a progress bar, then a trainer's progress as sft.fit reports it (its callback driven by hand, no model).
QUIET_CELLS = (
    """\
import warnings
from tqdm.auto import tqdm
from rlhf_course.core import runs
print("before")
with runs.quietly("Training the shared sft model"):
    print("a training log line")
    for _ in tqdm(range(3), desc="a bar"):
        pass
    warnings.warn("a library warning")
print("after")
""",
    """\
from types import SimpleNamespace
from rlhf_course.core.training import _progress_callback
callback, state = _progress_callback(), SimpleNamespace(is_world_process_zero=True, max_steps=3, global_step=0)
callback.on_train_begin(None, state, None)
for step in range(1, 4):
    state.global_step = step
    callback.on_log(None, state, None, logs={"loss": 0.5})
    callback.on_step_end(None, state, None)
callback.on_train_end(None, state, None)
print("trained")
""",
)


def test_training_leaves_no_log_in_a_notebook(kernel_env):
    """What a shared model's training and a trainer's progress bar leave in a saved notebook: nothing but the
    lab's own lines, so a lab's page is the same whether it trained the shared model or found it."""
    import nbformat
    from nbclient import NotebookClient

    from rlhf_course.tools.student import environment

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in QUIET_CELLS]
    with environment(kernel_env):
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    texts = [[output.get("text") or "".join(output.get("data", {}).get("text/html", "")) for output in cell.outputs]
             for cell in nb.cells]
    assert [[t for t in cell if t] for cell in texts] == [["before\n", "after\n"], ["trained\n"]], texts


def test_display_path_names_no_folder_of_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "somewhere" / "runs"))
    folder = runs.shared_dir("sft", {"a": 1}) / "final"
    assert runs.display_path(folder) == f"runs/shared/{folder.parent.name}/final"
    assert str(tmp_path) not in runs.display_path(folder)
    assert runs.display_path(tmp_path / "elsewhere" / "model") == "model"


def test_a_lab_run_folder_changes_with_what_changes_the_run_and_only_with_that(tmp_path, monkeypatch):
    import dataclasses

    from rlhf_course.core.profiles import get_profile

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))
    profile = get_profile("tiny")
    folder = runs.lab_run_dir("ppo", "ppo", 0, profile, tmp_path / "sft")
    assert folder.parent == tmp_path / "labs" / "ppo" and folder.name.startswith("ppo-seed0-")
    assert runs.lab_run_dir("ppo", "ppo", 0, get_profile("tiny"), tmp_path / "sft") == folder
    saves_more = profile.replace(rl=dataclasses.replace(profile.rl, checkpoint_steps=7))
    assert runs.lab_run_dir("ppo", "ppo", 0, saves_more, tmp_path / "sft") == folder, "how often it saves is not a setting"
    other_beta = profile.replace(rl=dataclasses.replace(profile.rl, beta=profile.rl.beta + 0.1))
    changed = [runs.lab_run_dir("ppo", "ppo", 1, profile, tmp_path / "sft"),
               runs.lab_run_dir("ppo", "ppo", 0, other_beta, tmp_path / "sft"),
               runs.lab_run_dir("ppo", "ppo", 0, profile, tmp_path / "other-sft"),
               runs.lab_run_dir("ppo", "ppo", 0, profile, tmp_path / "sft", [{"prompt": "a"}])]
    assert folder not in changed and len(set(changed)) == len(changed)


def test_a_lab_run_folder_changes_when_the_learners_function_does(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path))

    def reward(verdict):
        return verdict.correct * verdict.well_formed

    first = runs.lab_run_dir("reasoning", "gated", 0, reward)

    def reward(verdict):  # noqa: F811  (the learner's second attempt, under the same name)
        return verdict.correct + 0.5 * verdict.well_formed

    assert runs.lab_run_dir("reasoning", "gated", 0, reward) != first
    same = eval("lambda verdict: verdict.correct")
    assert runs.lab_run_dir("reasoning", "x", 0, same) == runs.lab_run_dir("reasoning", "x", 0,
                                                                             eval("lambda verdict: verdict.correct"))
