"""The shipped accelerate configs: each parses with accelerate's own loader and matches the multi-gpu profile;
the documented commands parse as written; the DDP config trains SFT and DPO on two CPU processes."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType

from rlhf_course.core.profiles import apply_overrides, get_profile

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"

# file name -> (distributed type, ZeRO stage or FSDP version, offload to CPU)
EXPECTED = {
    "ddp": (DistributedType.MULTI_GPU, None, False),
    "zero2": (DistributedType.DEEPSPEED, 2, False),
    "zero3": (DistributedType.DEEPSPEED, 3, False),
    "zero3_offload": (DistributedType.DEEPSPEED, 3, True),
    "fsdp2": (DistributedType.FSDP, 2, False),
}
PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}


def documented_commands(text: str) -> list[list[str]]:
    """Every ``accelerate launch ...`` command in the fenced bash blocks of a Markdown text, as argv lists."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [shlex.split(line.strip(), comments=True) for line in joined.splitlines()
                     if line.strip().startswith("accelerate launch")]
    return commands


def test_every_shipped_config_is_expected_and_documented():
    shipped = {path.stem for path in CONFIGS.glob("*.yaml")}
    assert shipped == set(EXPECTED), shipped
    readme = (CONFIGS / "README.md").read_text()
    for name in shipped:
        assert f"`{name}.yaml`" in readme, f"configs/accelerate/README.md should say when to use {name}.yaml"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_config_parses_and_matches_the_multi_gpu_profile(name):
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    kind, level, offload = EXPECTED[name]
    assert config.distributed_type == kind
    assert config.mixed_precision == PRECISION[get_profile("multi-gpu").dtype] == "bf16"
    assert config.num_processes == 8 and config.num_machines == 1 and not config.use_cpu
    if kind == DistributedType.DEEPSPEED:
        ds = config.deepspeed_config
        assert ds["zero_stage"] == level
        assert (ds["offload_optimizer_device"], ds["offload_param_device"]) == (("cpu", "cpu") if offload
                                                                              else ("none", "none"))
        if level == 3:  # the stage's final model must be saved whole, not as shards
            assert ds["zero3_save_16bit_model"] is True
    elif kind == DistributedType.FSDP:
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
        assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_offload_params"] is False
    else:
        assert not config.deepspeed_config and not config.fsdp_config


def _pipeline_parser() -> argparse.ArgumentParser:
    from rlhf_course import pipeline

    parser = argparse.ArgumentParser(prog="rlhf-course pipeline")
    pipeline.add_arguments(parser)
    return parser


def _check_command(argv: list[str]) -> str:
    """Parse a documented command as accelerate would, then its pipeline arguments as the pipeline would.

    Returns the config file it names.
    """
    assert argv[:2] == ["accelerate", "launch"], argv
    parsed = launch_command_parser().parse_args(argv[2:])
    config_file = parsed.config_file
    args, _, _ = _validate_launch_command(parsed)  # reads the config file into the arguments
    config = load_config_from_file(str(ROOT / config_file))
    assert args.module and args.training_script == "rlhf_course", argv
    assert args.training_script_args[0] == "pipeline", argv
    options = _pipeline_parser().parse_args(args.training_script_args[1:])
    profile = apply_overrides(get_profile(options.profile), options.overrides)
    from rlhf_course.pipeline import parse_stages

    assert parse_stages(options.stages)
    if config.distributed_type != DistributedType.MULTI_GPU or args.num_processes > 2:  # a GPU recipe
        assert args.num_processes == 8 and profile.name == "multi-gpu", argv
        assert args.mixed_precision == PRECISION[profile.dtype]
    else:  # the CPU check: fp32, as the course trains on a CPU
        assert args.mixed_precision == "no" and args.num_processes == 2
    return config_file


def test_documented_commands_parse_as_written():
    commands = documented_commands((CONFIGS / "README.md").read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scaling a stage up", 1)[-1].split("\n## ", 1)[0] if "## Scaling a stage up" in readme else ""
    if "configs/accelerate/" in section:  # the README's section, once it uses the shipped configs, is held to this too
        commands += documented_commands(section)
    configs = {Path(_check_command(argv)).stem for argv in commands}
    assert {"zero3", "fsdp2", "ddp"} <= configs, configs


def test_cpu_flag_is_refused_with_multi_gpu():
    """Why the CPU command has no --cpu: accelerate refuses --cpu with --multi_gpu (and alone starts one process)."""
    argv = ["--config_file", str(CONFIGS / "ddp.yaml"), "--multi_gpu", "--cpu", "--num_processes", "2", "x.py"]
    with pytest.raises(ValueError, match="only use one of"):
        _validate_launch_command(launch_command_parser().parse_args(argv))


def test_ddp_config_trains_sft_and_dpo_on_two_cpu_processes(tmp_path):
    """The CPU command of configs/accelerate/README.md, shrunk: two processes over gloo, each training its half.

    DPO's 64 pairs at 8 per process make 4 optimizer steps on two processes (8 on one).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "ddp.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29547",
           "-m", "rlhf_course", "pipeline", "--profile", "tiny", "--out", str(tmp_path), "--stages", "sft,dpo",
           "--quiet", "--set", "sft.n_demonstrations=128", "--set", "sft.epochs=1", "--set", "rm.n_pairs=64",
           "--set", "dpo.batch_size=8", "--set", "dpo.grad_accum=1", "--set", "dpo.checkpoint_steps=2",
           "--set", "n_eval_prompts=16", "--set", "eval_samples_per_prompt=1"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["world_size"] == 2
    assert results["stages"]["sft"]["train_world_size"] == 2, "the SFT trainer should see both processes"
    state = json.loads((tmp_path / "dpo" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["max_steps"] == state["global_step"] == 4, "64 pairs, 8 a process, 2 processes: 4 steps"
    assert not (tmp_path / "dpo" / "checkpoint-6").exists()
    assert (tmp_path / "dpo" / "final" / "model.safetensors").exists()
    assert results["stages"]["dpo"]["final_reward_accuracy"] is not None


class _ShardedTrainer:
    """What fit() asks of a TRL trainer launched with zero3.yaml or fsdp2.yaml (no GPU needed to check the plumbing)."""

    is_deepspeed_enabled, is_fsdp_enabled = True, False

    def __init__(self, model):
        self.model, self.saved, self.trained = model, [], False

    def remove_callback(self, callback):
        pass

    def train(self, resume_from_checkpoint=None):
        self.trained = True

    def save_model(self, path):
        self.saved.append(path)

    def is_world_process_zero(self):
        return True


def test_fit_saves_a_sharded_model_through_the_trainer_and_refuses_lora_before_training(tmp_path):
    """Under ZeRO-3 a model's own save_pretrained would write empty shards: the trainer gathers them instead."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from rlhf_course.core.training import fit

    model = LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                         num_attention_heads=1))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, "<unk>")))
    trainer = _ShardedTrainer(model)
    trained, resume = fit(trainer, tokenizer, tmp_path, lora=False, progress=False)
    assert trainer.trained and trained is model and resume is None
    assert trainer.saved == [str(tmp_path / "final")]
    assert (tmp_path / "final" / "tokenizer.json").exists() and not (tmp_path / "final" / "model.safetensors").exists()
    lora_trainer = _ShardedTrainer(model)
    with pytest.raises(ValueError, match="configs/accelerate/ddp.yaml"):
        fit(lora_trainer, tokenizer, tmp_path / "lora", lora=True, progress=False)
    assert not lora_trainer.trained
