"""The second-seed check: what every lab and the pipeline measured on the seed CI does not run.

CI executes every lab at seed 0 and trains the pipeline at seed 1. Thresholds
must hold on both seeds, so ``make seeds`` runs the other halves (every lab at
seed 1, the pipeline at seed 0) and the tests record what they measured in
``tests/seed_check.json`` (when ``RLHF_COURSE_SEED_CHECK`` names that file).
The file is kept in the repository; ``test_seed_check.py`` checks it against
today's thresholds, so raising a threshold that a recorded seed does not meet
fails until ``make seeds`` is run again.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

SEED_CHECK_ENV = "RLHF_COURSE_SEED_CHECK"
SEED_CHECK_FILE = Path(__file__).resolve().parent / "seed_check.json"


def _commit() -> str:
    """The commit the measured code came from (with '+' if the tree had changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def record_seed_check(kind: str, seed: int, measured: dict[str, Any]) -> None:
    """Add what ``kind`` (a lab's name, or ``"pipeline"``) measured at ``seed`` to the seed-check file, if one is set.

    Several pytest processes write the file at once (``make seeds`` runs two),
    so the read-modify-write happens under a file lock.
    """
    target = os.environ.get(SEED_CHECK_ENV)
    if not target:
        return
    from filelock import FileLock

    path = Path(target)
    with FileLock(str(path) + ".lock"):
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault(kind, {})[str(seed)] = {
            "measured": measured, "commit": _commit(),
            "date": datetime.date.today().isoformat(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)


def load_seed_check(path: Path = SEED_CHECK_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """The recorded file: ``{kind: {seed: {"measured", "commit", "date"}}}`` (empty if there is none)."""
    return json.loads(path.read_text()) if path.exists() else {}
