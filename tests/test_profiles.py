"""Profiles are plain data; `auto` follows the environment variable, then the hardware."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from rlhf_course.core.profiles import PROFILES, PROFILE_NAMES, Profile, auto_profile_name, get_profile


def test_every_name_has_a_profile():
    assert set(PROFILES) == set(PROFILE_NAMES)
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.description
        assert profile.dtype in {"float32", "float16", "bfloat16"}


def test_colab_t4_uses_fp16_not_bf16():
    assert get_profile("colab-t4").dtype == "float16"  # a T4 has no bfloat16


def test_tiny_and_smol_run_offline_on_cpu():
    assert get_profile("tiny").model == "tiny" and get_profile("tiny").dtype == "float32"
    assert get_profile("smol").sft.dataset is None and get_profile("tiny").sft.dataset is None


def test_lookup_is_case_and_space_insensitive():
    assert get_profile(" Tiny ") is PROFILES["tiny"]


def test_overrides_make_a_copy():
    profile = get_profile("tiny", seed=3)
    assert profile.seed == 3 and PROFILES["tiny"].seed == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.seed = 4  # type: ignore[misc]


def test_profile_objects_pass_through():
    profile = PROFILES["smol"].replace(max_new_tokens=8)
    assert get_profile(profile) is profile


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="tiny, smol, colab-t4, multi-gpu or 'auto'"):
        get_profile("huge")


def test_auto_honours_environment(monkeypatch):
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "smol")
    assert get_profile("auto").name == "smol"
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "tiny")
    assert get_profile().name == "tiny"


def test_auto_without_environment_follows_hardware(monkeypatch):
    monkeypatch.delenv("RLHF_COURSE_PROFILE", raising=False)
    assert get_profile("auto").name == auto_profile_name()[0]


def _fake_cuda(monkeypatch, count: int, memory_gb: float) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=memory_gb * 2**30))


@pytest.mark.parametrize("count, memory_gb, expected", [
    (0, 0, "tiny"), (1, 15, "colab-t4"), (1, 6, "tiny"), (4, 80, "multi-gpu"),
])
def test_auto_profile_name(monkeypatch, count, memory_gb, expected):
    _fake_cuda(monkeypatch, count, memory_gb)
    name, reason = auto_profile_name()
    assert name == expected and reason


def test_profile_is_a_dataclass():
    assert dataclasses.is_dataclass(Profile)


def test_an_unset_optional_number_is_overridden_with_a_number():
    from rlhf_course.core.profiles import apply_overrides, get_profile

    profile = apply_overrides(get_profile("smol"), ["ppo.steps=2", "ppo.beta=0.05", "sft.dataset=HuggingFaceH4/no_robots"])
    assert profile.ppo.steps == 2 and isinstance(profile.ppo.steps, int)
    assert profile.ppo.beta == 0.05
    assert profile.sft.dataset == "HuggingFaceH4/no_robots"


def test_caps_lower_only_the_sizes_above_them():
    from rlhf_course.core.profiles import cap_sizes

    tiny, changes = cap_sizes(get_profile("tiny"), {"rm.n_pairs": 6000, "rm.epochs": 2.0, "n_eval_prompts": 500})
    assert (tiny.rm.n_pairs, tiny.rm.epochs, tiny.n_eval_prompts) == (6000, 2.0, 200)
    assert changes == ["rm.n_pairs=6000", "rm.epochs=2.0"]
    smol, changes = cap_sizes(get_profile("smol"), {"rm.n_pairs": 6000})
    assert smol == get_profile("smol") and changes == []


def test_a_cap_on_an_unknown_or_unset_field_says_so():
    from rlhf_course.core.profiles import cap_sizes

    with pytest.raises(ValueError, match="no field 'pairs'"):
        cap_sizes(get_profile("tiny"), {"rm.pairs": 10})
    with pytest.raises(ValueError, match="only numeric sizes"):
        cap_sizes(get_profile("tiny"), {"rm.dataset": 10})
