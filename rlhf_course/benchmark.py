"""Benchmarks: wall-clock figures the README reports, measured rather than asserted.

Timings depend on the machine, so tests never assert them; this module measures
them on demand and writes JSON that the README's tables are filled from:

    rlhf-course benchmark pretrain --out runs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path



def benchmark_pretraining(repeats: int = 1) -> dict:
    """Wall time of pretraining the tiny base model from scratch (tokenizer included)."""
    import torch

    from .models import TinySpec, pretrain_tiny

    spec = TinySpec()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        pretrain_tiny(spec, seed=0, progress=False)
        seconds.append(time.perf_counter() - start)
    return {
        "benchmark": "pretrain_tiny",
        "seconds": min(seconds),
        "all_seconds": seconds,
        "steps": spec.steps,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


BENCHMARKS = {"pretrain": benchmark_pretraining}  # later stages add theirs here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="what to measure")
    parser.add_argument("--out", default=None, help="folder for <name>.json (default: print only)")
    parser.add_argument("--repeats", type=int, default=1)


def run_from_args(args: argparse.Namespace) -> int:
    result = BENCHMARKS[args.name](repeats=args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as tmp:
            tmp.write(text + "\n")
        Path(tmp.name).replace(out / f"{args.name}.json")
    return 0
