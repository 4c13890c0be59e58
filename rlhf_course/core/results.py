"""Measured outcomes of labs, written as small JSON files that tests can assert.

The last cell of every lab records what the lab achieved:

    >>> record_outcome("instruction_tuning", {"win_rate_vs_base": 0.71},
    ...                profile="tiny", seed=0)                    # doctest: +SKIP
    PosixPath('results/instruction_tuning.json')

The notebook tests read these files back and compare them with thresholds, so a
lab that runs but learns nothing fails. The folder is ``./results`` unless the
environment variable ``RLHF_COURSE_RESULTS_DIR`` names another.

Each record also says what the lab cost (``"seconds"``): the wall and CPU
seconds of the process since it started (a lab's kernel starts with the lab),
and the wall seconds it spent on training shared models, on evaluation and on
sampling, from the ledger that :func:`spending` keeps. ``rlhf-course benchmark
labs`` tabulates them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from rlhf_course import __version__

RESULTS_DIR_ENV = "RLHF_COURSE_RESULTS_DIR"

Value = float | int | str

_LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def results_folder(path: str | Path | None = None) -> Path:
    """The results folder: ``path`` if given, else ``$RLHF_COURSE_RESULTS_DIR``, else ``./results``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(RESULTS_DIR_ENV) or "results")


def record_outcome(
    lab: str,
    outcome: Mapping[str, Value],
    *,
    profile: str | None = None,
    seed: int | None = None,
) -> Path:
    """Write ``<results dir>/<lab>.json`` with the outcome and how it was obtained.

    Values must be finite numbers or strings (numpy and one-element torch
    scalars and 0-d tensors are converted). The file is written to a temporary name and then
    renamed, so a reader never sees half a file; a file that holds another
    lab's results, or that is not a results file at all, is never overwritten.
    Returns the path written.
    """
    _check_lab_name(lab)
    record = {
        "lab": lab,
        "outcome": {str(key): _json_value(key, value) for key, value in outcome.items()},
        "profile": getattr(profile, "name", profile),
        "seed": seed,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rlhf_course_version": __version__,
        "seconds": seconds_spent(),
    }
    folder = results_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lab}.json"
    _refuse_foreign_file(path, lab)
    _write_atomically(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


_LEDGER: dict[str, float] = {}
_OPEN: list[str] = []  # the categories being timed now, outermost first


@contextmanager
def spending(category: str) -> Iterator[None]:
    """Add the wall seconds spent inside this block to ``category`` in this process's ledger.

    Only the outermost block counts: sampling done while training a shared
    model is counted as "shared models", not twice.
    """
    _OPEN.append(category)
    start = time.perf_counter()
    try:
        yield
    finally:
        _OPEN.pop()
        if not _OPEN:
            _LEDGER[category] = _LEDGER.get(category, 0.0) + time.perf_counter() - start


def seconds_spent() -> dict[str, float]:
    """Wall and CPU seconds of this process since it started, and the ledger of :func:`spending`."""
    import psutil

    process = psutil.Process()
    return {"wall": round(time.time() - process.create_time(), 1), "cpu": round(time.process_time(), 1),
            **{category: round(seconds, 1) for category, seconds in sorted(_LEDGER.items())}}


def load_outcome(lab: str, results_dir: str | Path | None = None) -> dict[str, Any]:
    """Read back the record written by :func:`record_outcome` for ``lab``.

    The record has keys ``lab``, ``outcome``, ``profile``, ``seed``,
    ``timestamp`` and ``rlhf_course_version``.
    """
    _check_lab_name(lab)
    path = results_folder(results_dir) / f"{lab}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"No results for lab {lab!r} at {path}. Did the lab's results cell run "
            f"(it calls rlhf_course.core.results.record_outcome({lab!r}, ...))?"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("lab") != lab:
        raise ValueError(f"{path} holds results for lab {record.get('lab')!r}, not {lab!r}.")
    return record


def load_all(results_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every lab's record in the results folder, keyed by lab name."""
    folder = results_folder(results_dir)
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("lab") == path.stem and "outcome" in record:
            records[path.stem] = record
    return records


def results_table_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of lab outcomes, e.g. for the README.

    ``results`` maps lab names to records (as from :func:`load_all`) or
    directly to outcome dicts. One row per lab and metric.
    """
    lines = ["| lab | metric | value | profile | seed |", "|---|---|---|---|---|"]
    for lab, record in sorted(results.items()):
        is_record = "outcome" in record
        outcome = record["outcome"] if is_record else record
        profile = (record.get("profile") if is_record else None) or ""
        seed = record.get("seed") if is_record else None
        for metric, value in outcome.items():
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            lines.append(f"| {lab} | {metric} | {shown} | {profile} | {'' if seed is None else seed} |")
    return "\n".join(lines) + "\n"


# --- helpers ---------------------------------------------------------------


def _check_lab_name(lab: str) -> None:
    if not isinstance(lab, str) or not _LAB_NAME.match(lab):
        raise ValueError(
            f"Lab name {lab!r} is not usable as a file name. Use the notebook's stem, "
            "e.g. 'instruction_tuning' (letters, digits, '_', '-', '.')."
        )


def _json_value(key: Any, value: Any) -> Value:
    """``value`` as a JSON number or string, or a TypeError that names ``key``."""
    if callable(getattr(value, "item", None)) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar or a 0-d numpy array or torch tensor
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(
            f"outcome[{key!r}] is a {type(value).__name__} ({value!r}); outcome values must be "
            "numbers or strings. Convert it, e.g. float(x), int(x) or str(x)."
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError(
            f"outcome[{key!r}] is {value}; a measured outcome must be a finite number "
            "(NaN or infinity usually means training diverged)."
        )
    return value


def _refuse_foreign_file(path: Path, lab: str) -> None:
    """Raise if ``path`` exists and is not an earlier result of the same lab."""
    if not path.exists():
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        existing = None
    if not isinstance(existing, dict) or existing.get("lab") != lab:
        owner = existing.get("lab") if isinstance(existing, dict) else None
        what = f"results of lab {owner!r}" if owner else "something that is not a results file"
        raise FileExistsError(
            f"{path} holds {what}; refusing to overwrite it with lab {lab!r}. "
            f"Move it away, or set {RESULTS_DIR_ENV} to another folder."
        )


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
