"""Checkpoints of the course's own training loops, so a run killed half-way resumes where it stopped.

TRL's trainers checkpoint themselves (see :func:`rlhf_course.core.training.fit`);
the loops the course writes by hand (REINFORCE and RLOO in
:mod:`rlhf_course.policy_gradients.train`, PPO in :mod:`rlhf_course.ppo.train`)
use this module. Every ``checkpoint_steps`` steps a loop calls
:func:`save_checkpoint`, which writes ``output_dir/checkpoint-<step>/``:

``<name>.safetensors``
    the trainable parameters of each model (LoRA adapters, or every weight);
``optimizer.pt``
    the optimizer's and scheduler's state and the loop's own running values
    (e.g. REINFORCE's baseline), read back with ``weights_only=True``;
``rng-<rank>.json``
    each process's torch (CPU and CUDA), Python and NumPy random state;
``state.json``
    the step, the loop's settings and its history so far.

The folder is written under a temporary name and renamed when complete, so a
kill during the write leaves the previous checkpoint intact; only the newest
``keep`` checkpoints stay. Started again with the same ``output_dir``, a loop
calls :func:`last_loop_checkpoint` and :func:`load_checkpoint` after building
its models and optimizer exactly as a fresh run does, then continues from the
saved step with the saved random state: on a CPU the resumed run is
bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class LoopState:
    """What :func:`load_checkpoint` gives back besides the weights: where the loop was, and what it had logged."""

    path: Path
    step: int
    history: list[dict] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def due(step: int, every: int) -> bool:
    """Whether a loop that has just finished ``step`` (1-based) saves a checkpoint; never when ``every`` is 0."""
    return every > 0 and step % every == 0


def last_loop_checkpoint(output_dir: str | Path | None) -> Path | None:
    """The complete ``checkpoint-<step>`` folder with the highest step under ``output_dir``, or ``None``."""
    if output_dir is None or not Path(output_dir).is_dir():
        return None
    found = [(int(m.group(1)), p) for p in Path(output_dir).iterdir()
             if (m := _NAME.match(p.name)) and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters an optimizer changes, by name (tied weights once: ``named_parameters`` drops duplicates)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict:
    """This process's random state (torch CPU and CUDA, Python, NumPy) as JSON-ready data."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state().tolist(),
            "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
            "python": [version, list(mt), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def save_checkpoint(output_dir: str | Path, step: int, models: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer, history: list[dict], *, settings: dict | None = None,
                    scheduler: Any = None, extra: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically and delete all but the newest ``keep`` checkpoints.

    ``models`` maps a file name to a model (e.g. ``{"policy": policy, "critic": critic}``);
    ``settings`` (JSON-ready) are compared on resume, so that a run never
    continues a checkpoint written with other settings; ``extra`` holds the
    loop's own running values (tensors or numbers). Under ``torchrun`` every
    rank must call this: each writes its random state, rank 0 the rest.
    """
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    output_dir = Path(output_dir)
    final, tmp = output_dir / f"checkpoint-{step}", output_dir / f".checkpoint-{step}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # what a kill during an earlier write left
        tmp.mkdir(parents=True)
    _barrier()
    (tmp / f"rng-{rank}.json").write_text(json.dumps(_rng_state()))
    if rank == 0:
        from safetensors.torch import save_file

        for name, model in models.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in _trainable(model).items()},
                      str(tmp / f"{name}.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": None if scheduler is None else
                    scheduler.state_dict(), "extra": extra or {}}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "settings": settings, "history": history},
                                                   indent=1, default=float))
    _barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        steps = sorted(int(m.group(1)) for p in output_dir.iterdir() if (m := _NAME.match(p.name)))
        for old in steps[:-keep]:
            shutil.rmtree(output_dir / f"checkpoint-{old}", ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(path: str | Path, models: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, *,
                    settings: dict | None = None, scheduler: Any = None) -> LoopState:
    """Load a checkpoint into models built and an optimizer made as for a fresh run; set the random state.

    Raises a clear error when the checkpoint was written with other
    ``settings`` than this run's, or holds other parameters than ``models``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    if settings is not None and state["settings"] is not None and state["settings"] != settings:
        changed = sorted(k for k in {**settings, **state["settings"]}
                         if settings.get(k) != state["settings"].get(k))
        raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); it cannot be "
                         "continued with these. Choose another output folder, or delete the checkpoint to start over.")
    for name, model in models.items():
        saved, own = load_file(str(path / f"{name}.safetensors")), _trainable(model)
        if saved.keys() != own.keys():
            raise ValueError(f"{path / f'{name}.safetensors'} holds other parameters than this run's {name} "
                             "(another model or LoRA setting?). Choose another output folder, or delete the checkpoint.")
        with torch.no_grad():
            for key, param in own.items():
                param.copy_(saved[key])
    blob = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    rng = path / f"rng-{rank}.json"
    _set_rng_state(json.loads((rng if rng.exists() else path / "rng-0.json").read_text()))
    return LoopState(path, state["step"], state["history"], blob["extra"])


def say_resumed(what: str, checkpoint: Path, step: int, steps: int) -> None:
    """The one line a resumed loop prints (rank 0 only), so that the learner knows the run continued."""
    from rlhf_course.core.runs import display_path

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank == 0 and step >= steps:
        print(f"{what}: resuming from {display_path(checkpoint)} (step {step} of {steps}): this run finished "
              f"earlier and is reused. Delete {display_path(Path(checkpoint).parent)} to train it again.", flush=True)
    elif rank == 0:
        print(f"{what}: resuming from {display_path(checkpoint)} (step {step} of {steps}).", flush=True)


# ----------------------------------------------------------------------------- stages made of rounds

ROUND_RECORD = "round.json"


def round_key(rows: list[dict], *settings: Any) -> str:
    """A digest of what a round trains on and how: equal rows and settings, equal key (see :func:`finished_round`)."""
    from rlhf_course.core.runs import settings_digest

    return settings_digest({"rows": rows, "settings": list(settings)})


def record_round(folder: str | Path, key: str, record: dict) -> None:
    """Mark a finished round of a stage made of rounds (rejection sampling, online DPO): ``folder/round.json``.

    Written atomically after the round's model is saved in ``folder/final``,
    so its presence means the round is complete.
    """
    path = Path(folder) / ROUND_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "record": record}, indent=1, default=float))
    tmp.replace(path)


def finished_round(folder: str | Path, key: str) -> dict | None:
    """The record of a round an earlier run finished in ``folder`` with the same ``key``, else ``None``.

    A stage samples a round's rows again when it restarts (each round reseeds
    its sampling, so they are the same rows) and trains only when no finished
    round has their key: a round that was trained on other rows or with other
    settings (a changed reward model, say) is trained again, never reused.
    """
    path = Path(folder) / ROUND_RECORD
    final = Path(folder) / "final"
    if not path.is_file() or not any((final / name).is_file() for name in ("model.safetensors",
                                                                           "model.safetensors.index.json")):
        return None  # no saved model (a large one is sharded, with an index)
    saved = json.loads(path.read_text())
    return saved["record"] if saved.get("key") == key else None


# ----------------------------------------------------------------------------- sampling that resumes

SAMPLES = "samples.pt"


def model_fingerprint(model: torch.nn.Module) -> list[float]:
    """Two numbers per weight tensor (its sum and its sum of squares) that change whenever the weights do.

    Cheap enough to compute at every call (one pass over the weights), and
    enough to tell the policy that drew some saved samples from another one.
    """
    with torch.no_grad():
        return [round(float(v), 6) for p in model.parameters()
                for v in (p.double().sum(), p.double().square().sum())]


def save_samples(output_dir: str | Path, key: str, done: int, saved: dict[str, Any]) -> None:
    """Write ``output_dir/samples.pt`` atomically: what the first ``done`` prompts gave, and the random state.

    ``saved`` holds the samples so far (lists and tensors); ``key`` says which
    prompts, settings and policy they belong to (see :func:`load_samples`).
    """
    path = Path(output_dir) / SAMPLES
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".pt.{os.getpid()}.tmp")  # ranks that sample the same prompts each write whole files
    torch.save({"key": key, "done": done, "rng": _rng_state(), **saved}, tmp)
    tmp.replace(path)


def load_samples(output_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The samples an interrupted run saved under ``output_dir`` for the same ``key``, with its random state set.

    ``None`` when there are none, or when they were drawn for other prompts,
    settings or policy (then sampling starts again from the first prompt).
    """
    path = Path(output_dir) / SAMPLES
    if not path.is_file():
        return None
    saved = torch.load(path, weights_only=True)
    if saved.get("key") != key:
        return None
    _set_rng_state(saved.pop("rng"))
    return saved

