"""Every kind of trainer resumes after a real kill and ends where an uninterrupted run ends.

Each test starts the same short ``tiny`` training twice as real processes: a
reference run, and a run killed with SIGKILL once its first checkpoint is on
disk (its reward function, or its training step, waits half a second per step
so that the kill lands before the next checkpoint; waiting changes no number).
Then the killed run is started again with the same output folder and must
report the checkpoint it resumed from and end with the reference's weights and
history. One test per kind: the course's own policy-gradient loop
(REINFORCE, whose running baseline is state too), PPO (policy, critic and one
optimizer), and a TRL trainer run through ``core.training.fit`` (DPO).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r'''
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from safetensors.torch import save_file
from transformers import AutoTokenizer
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.toyworld import training

kind, path, out, pause = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(path)
small = ["rl.prompts_per_step=4", "rl.k=2", "max_new_tokens=8", "rl.checkpoint_steps=2"]


def reward(prompts, responses):  # shorter is better; the pause gives the test time to kill before step 4
    time.sleep(pause)
    return torch.tensor([-float(len(r)) for r in responses])


if kind == "reinforce":
    from rlhf_course.policy_gradients.train import train_policy_gradient
    profile = apply_overrides(get_profile("tiny"), small + ["rl.steps=4"])
    result = train_policy_gradient(load_policy(path, profile), load_policy(path, profile), tokenizer, reward, profile,
                                   prompts=training.rl_prompts(profile, 0), method="reinforce", progress=False,
                                   output_dir=out)
    model, history = result.model, result.history
elif kind == "ppo":
    from rlhf_course.ppo.train import train_ppo
    profile = apply_overrides(get_profile("tiny"), small + ["ppo.steps=4", "ppo.epochs=2", "ppo.minibatches=2"])
    result = train_ppo(load_policy(path, profile), load_policy(path, profile), path, tokenizer, reward, profile,
                       prompts=training.ppo_prompts(profile, 0), progress=False, output_dir=out)
    model, history = result.model, result.history
    save_file({k: v.detach().clone() for k, v in result.critic.state_dict().items()}, str(out / "critic.safetensors"))
else:  # dpo: TRL's DPOTrainer through core.training.fit, 16 pairs in 4 steps of 4
    from trl import DPOTrainer
    from rlhf_course.direct_alignment.train import train_dpo
    from rlhf_course.preference_data.toy import toy_pairs
    step = DPOTrainer.training_step
    DPOTrainer.training_step = lambda self, *a, **k: (time.sleep(pause), step(self, *a, **k))[1]
    profile = apply_overrides(get_profile("tiny"), ["dpo.batch_size=4", "dpo.checkpoint_steps=2",
                                                    "max_new_tokens=8"])
    result = train_dpo(path, tokenizer, toy_pairs(profile, 0, n=16), profile, output_dir=out, progress=False)
    model = result.model
    history = [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k}
               for e in result.log_history]
save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(out / "policy.safetensors"))
(out / "result.json").write_text(json.dumps({"history": history, "resumed_from": result.resumed_from},
                                            default=float))
'''


def _start(kind: str, path: Path, out: Path, pause: float) -> subprocess.Popen:
    script = out.parent / "resume_script.py"
    script.write_text(_SCRIPT)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    log = open(out / "log.txt", "w")
    return subprocess.Popen([sys.executable, str(script), kind, str(path), str(out), str(pause)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, out: Path, timeout: float = 120) -> dict:
    assert process.wait(timeout=timeout) == 0, (out / "log.txt").read_text()[-3000:]
    return json.loads((out / "result.json").read_text())


def _complete_json(path: Path) -> bool:
    """Whether ``path`` exists and holds a whole JSON document."""
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _kill_after_first_checkpoint(process: subprocess.Popen, out: Path, marker: str, timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``out/checkpoint-2/<marker>`` is written whole; fail if the run ends first.

    The marker is JSON and written last; a file that exists but does not parse
    yet is still being written, and a kill then would leave no complete
    checkpoint (the resumed run would rightly start afresh).
    """
    deadline = time.monotonic() + timeout
    while not _complete_json(out / "checkpoint-2" / marker):
        assert process.poll() is None, "the run ended before its first checkpoint:\n" + \
            (out / "log.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (out / "result.json").exists(), "the kill came too late: the run had finished"


def _weights(out: Path, name: str = "policy") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / f"{name}.safetensors"))


def _without_time(history: list[dict]) -> list[dict]:
    """The logged numbers but the clock's (``None``, not logged, as NaN so that it compares equal to itself)."""
    return [{k: float("nan") if v is None else v for k, v in e.items() if k != "seconds"} for e in history]


@pytest.mark.slow
@pytest.mark.parametrize("kind, marker, weights", [
    ("reinforce", "state.json", ["policy"]),
    ("ppo", "state.json", ["policy", "critic"]),
    ("dpo", "trainer_state.json", ["policy"]),
])
def test_a_killed_run_resumes_and_ends_where_an_uninterrupted_run_ends(tiny_policy, tmp_path, kind, marker, weights):
    """4 steps, a checkpoint every 2: killed during step 3, resumed from step 2, the same 4 steps' result.

    On one CPU thread the result is in fact bit-identical; the tolerance only
    spares the test from a platform's summation order. TRL averages its logged
    numbers over the steps since its last log (every 5 steps), which a resumed
    run starts counting afresh, so for DPO the weights are compared, not the log.
    """
    path, _ = tiny_policy
    reference = _start(kind, path, tmp_path / "reference", pause=0.0)
    killed = _start(kind, path, tmp_path / "killed", pause=0.5)
    _kill_after_first_checkpoint(killed, tmp_path / "killed", marker)
    again = _finish(_start(kind, path, tmp_path / "killed", pause=0.0), tmp_path / "killed")
    expected = _finish(reference, tmp_path / "reference")

    assert expected["resumed_from"] is None
    assert again["resumed_from"] == str(tmp_path / "killed" / "checkpoint-2")
    assert "resuming from" in (tmp_path / "killed" / "log.txt").read_text(), "the resumed run says so"
    assert [e.get("step") for e in again["history"]] == [e.get("step") for e in expected["history"]]
    compared = [] if kind == "dpo" else zip(_without_time(again["history"]), _without_time(expected["history"]))
    for got, want in compared:
        assert got.keys() == want.keys()
        assert [got[k] for k in want] == pytest.approx([want[k] for k in want], rel=1e-6, nan_ok=True), want["step"]
    for name in weights:
        resumed, uninterrupted = _weights(tmp_path / "killed", name), _weights(tmp_path / "reference", name)
        assert resumed.keys() == uninterrupted.keys()
        for key in uninterrupted:
            torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-6, msg=key)
    # the weights moved: a resume that loaded nothing and trained nothing would not pass the checks above
    start, trained = _weights(Path(path), "model"), _weights(tmp_path / "reference")
    assert any(not torch.equal(trained[k], start[k]) for k in start.keys() & trained.keys())


# ----------------------------------------------------------------------------- stages made of rounds


def test_rejection_sampling_reuses_a_finished_round_only_for_the_same_rows(tiny_policy, tmp_path):
    """Restarted, a round finished on the same rows is read back, not trained; other rows train it again."""
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.rejection_sampling.train import rejection_sampling_finetune

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["rs.n=2", "max_new_tokens=6"])
    rounds = [[f"Say {w}." for w in ("yes", "no", "maybe")], [f"Name {w}." for w in ("a cat", "a dog")]]
    trained = []

    def finetune(policy, tokenizer, rows, profile, *, output_dir, seed, progress):  # stands in for train_sft
        trained.append((Path(output_dir).name, len(rows)))
        with torch.no_grad():
            policy.get_input_embeddings().weight.add_(0.01 * (seed + 1))  # a visible, round-specific change
        policy.save_pretrained(Path(output_dir) / "final")
        return type("Result", (), {"model": policy})

    def run(reward):
        return rejection_sampling_finetune(load_policy(path, profile), tokenizer, reward, rounds, profile, finetune,
                                           output_dir=tmp_path / "rs", progress=False)

    shorter = lambda prompts, responses: torch.tensor([-float(len(r)) for r in responses])  # noqa: E731
    first = run(shorter)
    assert trained == [("round1", 3), ("round2", 2)]
    again = run(shorter)
    assert trained == [("round1", 3), ("round2", 2)], "the finished rounds were trained again"
    assert again.rounds == first.rounds
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
    run(lambda prompts, responses: torch.tensor([float(len(r)) for r in responses]))  # another reward: other rows
    assert trained[2:] == [("round1", 3), ("round2", 2)]


def test_a_finished_run_started_again_is_reused_and_says_how_to_train_it_again(tiny_policy, tmp_path, capsys):
    """A lab cell run again after its run finished (a re-run after a lost runtime) gets the same result at once."""
    from transformers import AutoTokenizer

    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.policy_gradients.train import train_policy_gradient
    from rlhf_course.toyworld import training

    path, _ = tiny_policy
    tokenizer = AutoTokenizer.from_pretrained(path)
    profile = apply_overrides(get_profile("tiny"), ["rl.prompts_per_step=2", "rl.k=2", "max_new_tokens=4",
                                                    "rl.steps=2", "rl.checkpoint_steps=2"])

    def run():
        result = train_policy_gradient(load_policy(path, profile), load_policy(path, profile), tokenizer,
                                       lambda p, r: torch.tensor([-float(len(x)) for x in r]), profile,
                                       prompts=training.rl_prompts(profile, 0), method="rloo", progress=False,
                                       output_dir=tmp_path / "run")
        return result, {k: v.clone() for k, v in result.model.state_dict().items()}

    (first, weights), start = run(), time.perf_counter()
    assert "resuming" not in capsys.readouterr().out
    again, weights_again = run()
    said = capsys.readouterr().out
    assert "step 2 of 2" in said and "finished earlier and is reused" in said and "Delete" in said
    assert json.dumps(_without_time(again.history)) == json.dumps(_without_time(first.history))
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)


def test_sampling_saved_in_chunks_resumes_after_a_crash_and_draws_what_one_call_draws(tiny_policy, tmp_path, capsys,
                                                                                      monkeypatch):
    """Best-of-n's samples are saved chunk by chunk; a run that dies half-way resumes and ends identical."""
    from transformers import AutoTokenizer

    from rlhf_course.core import rollout
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.toyworld import make_prompts
    from rlhf_course.toyworld.gold import gold_rewards

    path, _ = tiny_policy
    tokenizer = AutoTokenizer.from_pretrained(path)
    profile = apply_overrides(get_profile("tiny"), ["eval_batch_size=4", "max_new_tokens=6"])
    policy = load_policy(path, profile)
    prompts = make_prompts("test", 10, seed=3)  # chunks of 4, 4 and 2 prompts
    reward = lambda texts, responses: torch.tensor([float(len(r)) for r in responses])  # noqa: E731
    calls, generate = [], rollout.generate

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 2:
            raise RuntimeError("the runtime went away")
        return generate(*args, **kwargs)

    whole = rollout.scored_samples(policy, tokenizer, prompts, 2, reward, profile, gold_fn=gold_rewards, seed=5)
    after_whole = torch.rand(3)
    monkeypatch.setattr(rollout, "generate", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        rollout.scored_samples(policy, tokenizer, prompts, 2, reward, profile, gold_fn=gold_rewards, seed=5,
                               output_dir=tmp_path / "bon")
    monkeypatch.setattr(rollout, "generate", lambda *a, **k: (calls.append(len(a[2])), generate(*a, **k))[1])
    calls.clear()
    torch.manual_seed(1234)  # whatever state the restarted process is in
    resumed = rollout.scored_samples(policy, tokenizer, prompts, 2, reward, profile, gold_fn=gold_rewards, seed=5,
                                     output_dir=tmp_path / "bon")
    assert "resuming after prompt 4 of 10" in capsys.readouterr().out
    assert calls == [4, 2], "only the chunks after the saved one are sampled again"
    assert resumed[0] == whole[0]
    assert torch.equal(resumed[1], whole[1]) and torch.equal(resumed[2], whole[2])
    assert torch.equal(torch.rand(3), after_whole), "the random state goes on as after one uninterrupted call"

    with torch.no_grad():
        policy.get_input_embeddings().weight.add_(0.01)  # another policy: its samples are drawn afresh
    calls.clear()
    rollout.scored_samples(policy, tokenizer, prompts, 2, reward, profile, seed=5, output_dir=tmp_path / "bon")
    assert calls == [4, 4, 2] and "resuming" not in capsys.readouterr().out
