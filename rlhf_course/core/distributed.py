"""Distributed helpers: which process this is, and averaging over processes.

Under ``torchrun`` or ``accelerate launch`` several processes train the same
model on different data. :func:`rank`, :func:`world_size` and
:func:`is_main_process` read the launcher's environment, which is all a stage
needs to decide who writes a file. A hand-written loop that exchanges tensors
(PPO's) first joins the process group (:func:`join_process_group`), then
averages numbers (:func:`all_mean`) and gradients (:func:`average_gradients`)
over the processes, which is what DDP does for a TRL trainer.
"""

from __future__ import annotations

import os

import torch

from rlhf_course.core.models import device


def rank() -> int:
    """This process's rank under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together under torchrun/accelerate (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on the process that writes files and prints results: rank 0, or the only process."""
    return rank() == 0


# ----------------------------------------------------------------------------- a hand-written data-parallel loop


def join_process_group() -> tuple[int, int]:
    """(rank, world size). Under ``torchrun`` or ``accelerate launch``, joins the process group."""
    from accelerate import PartialState

    state = PartialState()  # initialises torch.distributed from the launcher's environment
    return state.process_index, state.num_processes


def all_mean(value: torch.Tensor | float) -> float:
    """The mean of a number over all ranks (itself when not distributed)."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        value = value.to(device())
        torch.distributed.all_reduce(value)
        value = value / torch.distributed.get_world_size()
    return float(value)


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average gradients over ranks, so every rank takes the same step (what DDP does for you)."""
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        for p in parameters:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= torch.distributed.get_world_size()
