"""The code of the Instruction Tuning chapter (``book/instruction_tuning.md``, ``labs/instruction_tuning.ipynb``).

- data.py: demonstrations and completion-only labels
- train.py: supervised fine-tuning with TRL's SFTTrainer
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import instruction_tuning
"""

from .data import chat_rows, completion_labels, load_demonstrations, to_sft_dataset, toy_demonstrations
from .train import SFTResult, sft_config, train_sft

__all__ = [
    "chat_rows",
    "completion_labels",
    "load_demonstrations",
    "to_sft_dataset",
    "toy_demonstrations",
    "SFTResult",
    "sft_config",
    "train_sft",
]
