"""One entry point for real preference data: a hub dataset or local files in its schema, as course rows.

    loaded = preference_dataset("HuggingFaceH4/ultrafeedback_binarized", "train_prefs", n=3000)
    print(loaded.summary())   # one line: rows read, used, skipped and why, the first few row numbers
    rows = loaded.rows        # prompt / chosen / rejected, as every stage takes them

The data is read by the same ``datasets.load_dataset`` call whatever its source:
the hub id for a hub dataset, ``"json"`` or ``"parquet"`` with ``data_files``
for local files (a file, or a folder holding one file per split named after it,
e.g. ``train_prefs.jsonl`` and ``test_prefs.jsonl``). Each record goes through
its schema's adapter (:mod:`rlhf_course.preference_data.data`) and the one
validator's rules; a record that fails either is skipped and counted, never a
crash, and :attr:`LoadedPreferences.skipped` says which record (its 0-based row
number in the split, as ``dataset[i]``) and why.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .data import (HUB_PREFERENCES, PreferenceDataError, Problem, _check_row, _check_same_format, _hh_row, _Invalid,
                   _shp_row, _ultrafeedback_row, hub_preferences)

SCHEMAS = ("ultrafeedback", "hh-rlhf", "shp", "course")  # the course's own rows: prompt, chosen, rejected
SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class LoadedPreferences:
    """Rows of a preference dataset, and what was skipped on the way.

    Attributes:
        rows: the course rows that passed, in the order of the split.
        source: the hub id or the local file or folder.
        split: the split read (a single local file is one split, reported as given).
        schema: the schema the records were read in (one of :data:`SCHEMAS`).
        n_read: records read (after the ``n`` subset, before skipping).
        skipped: one :class:`~rlhf_course.preference_data.Problem` per skipped record,
            its ``row`` the record's row number in the split.
    """

    rows: list[dict]
    source: str
    split: str
    schema: str
    n_read: int
    skipped: list[Problem] = field(default_factory=list)

    def summary(self, most: int = 5) -> str:
        """One line: ``"<source> [<split>]: 12 rows read, 9 used, 3 skipped (missing field 1, ...; rows 2, 5, 7)"``."""
        line = f"{self.source} [{self.split}]: {self.n_read} rows read, {len(self.rows)} used, {len(self.skipped)} skipped"
        if not self.skipped:
            return line
        reasons = ", ".join(f"{reason} {count}" for reason, count in Counter(p.reason for p in self.skipped).items())
        rows = ", ".join(str(p.row) for p in self.skipped[:most]) + (", ..." if len(self.skipped) > most else "")
        return f"{line} ({reasons}; rows {rows})"

    def as_dict(self) -> dict:
        """What the pipeline writes as a stage's ``data``."""
        return {"source": self.source, "split": self.split, "schema": self.schema, "rows_used": len(self.rows),
                "rows_skipped": len(self.skipped),
                "skipped_reasons": dict(Counter(p.reason for p in self.skipped)),
                "first_skipped_rows": [p.row for p in self.skipped[:5]]}


def _course_row(record: Mapping, conversational: bool) -> dict:
    """A record already in the course format: kept as it is (the validator checks it)."""
    return dict(record)


# one record to one row, the hub adapters' own per-record functions: they raise ``_Invalid`` with a reason
CONVERTERS: dict[str, Callable[[Mapping, bool], dict]] = {
    "ultrafeedback": _ultrafeedback_row, "hh-rlhf": _hh_row, "shp": _shp_row, "course": _course_row,
}


def detect_schema(columns: list[str]) -> str:
    """Which schema a table's columns follow: SHP, UltraFeedback binarized, HH-RLHF or the course's own."""
    names = set(columns)
    if {"human_ref_A", "human_ref_B", "labels"} <= names:
        return "shp"
    if {"chosen", "rejected"} <= names and names & {"prompt_id", "messages", "score_chosen"}:
        return "ultrafeedback"
    if {"prompt", "chosen", "rejected"} <= names:
        return "course"
    if {"chosen", "rejected"} <= names:
        return "hh-rlhf"
    raise PreferenceDataError(f"columns {sorted(names)} match no preference schema; expected UltraFeedback binarized "
                              "(prompt, chosen, rejected as messages, prompt_id, ...), HH-RLHF (chosen, rejected "
                              "transcripts), SHP (history, human_ref_A, human_ref_B, labels) or the course's "
                              "(prompt, chosen, rejected). Pass schema=... if the columns are right.")


def _local_files(path: Path, split: str | None, schema: str | None) -> tuple[str, str, str]:
    """``(builder, data file, split)`` for a local file, or a folder with one file per split."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise ValueError(f"{path}: expected a .jsonl, .json or .parquet file in a preference schema.")
        return SUFFIXES[path.suffix], str(path), split or "train"
    wanted = split or (hub_preferences(schema).splits[0] if schema in HUB_PREFERENCES else None)
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
    stems = [p.stem for p in files]
    if wanted is None:
        wanted = next((s for s in ("train", "train_prefs") if s in stems), None)
    match = [p for p in files if p.stem == wanted]
    if not match:
        raise FileNotFoundError(f"{path} has no file for split {wanted!r} (found: {', '.join(stems) or 'none'}); "
                                "name the files after their splits, e.g. train_prefs.jsonl and test_prefs.jsonl.")
    return SUFFIXES[match[0].suffix], str(match[0]), wanted


def _load(name_or_path: str | os.PathLike, split: str | None, schema: str | None):
    """``(datasets.Dataset, source, split, schema or None)`` through ``datasets.load_dataset``."""
    from datasets import load_dataset

    path = Path(name_or_path)
    if path.exists():
        builder, data_file, split = _local_files(path, split, schema)
        try:
            data = load_dataset(builder, data_files={split: data_file}, split=split)
        except Exception as error:  # datasets wraps Arrow's errors in types that vary by version
            cause = error.__cause__ or error
            raise PreferenceDataError(f"{data_file}: datasets could not read it as {builder} "
                                      f"({type(cause).__name__}: {cause}). A field must have the same type in "
                                      "every row.") from error
        return data, str(name_or_path), split, schema
    if any(sep in str(name_or_path) for sep in ("./", "\\")) or Path(name_or_path).suffix in SUFFIXES:
        raise FileNotFoundError(f"{name_or_path} does not exist; pass a hub id ("
                                f"{', '.join(e.hub_id for e in HUB_PREFERENCES.values())}) or local files.")
    entry = hub_preferences(str(name_or_path))
    split = split or entry.splits[0]
    if split not in entry.splits:
        raise ValueError(f"{entry.hub_id} has no split {split!r}; use one of {', '.join(entry.splits)}.")
    short = next(s for s, e in HUB_PREFERENCES.items() if e is entry)
    return load_dataset(entry.hub_id, split=split), entry.hub_id, split, schema or short


def preference_dataset(name_or_path: str | os.PathLike, split: str | None = None, *, schema: str | None = None,
                       n: int | None = None, seed: int = 0, conversational: bool = True,
                       min_score_ratio: float | None = None, max_prompt_tokens: int | None = None,
                       tokenizer=None) -> LoadedPreferences:
    """Load a preference dataset by hub id or local path, adapt it to course rows, validate, skip bad records.

    ``name_or_path``: ``"HuggingFaceH4/ultrafeedback_binarized"`` (splits
    ``train_prefs``/``test_prefs``), ``"Anthropic/hh-rlhf"`` or ``"stanfordnlp/SHP"``
    (``train``/``test``), a short name (``"shp"``), or a local ``.jsonl``/``.parquet``
    file or folder of per-split files in one of those schemas (detected from the
    columns unless ``schema`` is given). ``split`` defaults to the dataset's
    training split. ``n`` keeps a random subset of that many records (fixed by
    ``seed``, in the split's order). ``conversational`` picks message lists or
    plain strings. SHP (its dataset card, https://huggingface.co/datasets/stanfordnlp/SHP):
    ``labels`` is 1 when comment A (``human_ref_A``) is preferred and 0 when B
    is, so ``chosen`` is A when ``labels == 1``, else B; ``score_ratio`` is the
    preferred comment's score over the other's, and ``min_score_ratio`` (off by
    default; e.g. 2.0) keeps only pairs whose winner was upvoted at least that
    many times more, the clearer labels.
    Every skipped record is in ``skipped``; when any is, a one-line warning says
    how many and why.
    """
    if schema is not None and schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}; got {schema!r}.")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of rows or None (all); got {n}.")
    data, source, split, schema = _load(name_or_path, split, schema)
    schema = schema or detect_schema(list(data.column_names))
    indices = range(len(data))
    if n is not None and n < len(data):
        indices = sorted(np.random.default_rng(seed).choice(len(data), size=n, replace=False).tolist())
        data = data.select(indices)
    loaded = LoadedPreferences([], source, split, schema, len(data))
    first = None  # the format of the first good row: one dataset holds one format
    for row_number, record in zip(indices, data):
        try:
            row = _adapted_row(record, schema, conversational, min_score_ratio)
            kind = _check_row(row, max_prompt_tokens=max_prompt_tokens, tokenizer=tokenizer)
            _check_same_format(kind, first)
        except _Invalid as invalid:
            loaded.skipped.append(invalid.at(row_number))
            continue
        first = first or (kind, f"row {row_number}")
        loaded.rows.append(row)
    if loaded.skipped:
        warnings.warn(loaded.summary(), stacklevel=2)
    return loaded


def _adapted_row(record: Mapping[str, Any], schema: str, conversational: bool,
                 min_score_ratio: float | None) -> dict:
    """One record as a course row; ``_Invalid`` (with the adapter's reason) if it cannot be one."""
    record = {key: value for key, value in record.items() if value is not None}  # Arrow's fill for a missing field
    if schema == "shp" and min_score_ratio is not None:
        ratio = record.get("score_ratio")
        if not isinstance(ratio, (int, float)) or ratio < min_score_ratio:
            raise _Invalid("score_ratio", "score ratio below the filter",
                           f"score_ratio {ratio!r} is below min_score_ratio={min_score_ratio}.",
                           "Lower min_score_ratio to keep such pairs.")
    return CONVERTERS[schema](record, conversational)


HELD_OUT = ("test_prefs", "test", "validation")  # the held-out splits' names, first found first


def held_out_split(name_or_path: str | os.PathLike) -> str | None:
    """The held-out split of a dataset: its hub test split, or a local folder's ``test_prefs``/``test`` file.

    ``None`` for a single local file (one split, nothing held out).
    """
    path = Path(name_or_path)
    if path.is_dir():
        stems = {p.stem for p in path.iterdir() if p.suffix in SUFFIXES}
        return next((name for name in HELD_OUT if name in stems), None)
    if path.exists():
        return None
    return next(name for name in HELD_OUT if name in hub_preferences(str(name_or_path)).splits)


def dataset_prompts(rows: list[dict], seed: int = 0) -> list:
    """Each distinct prompt of preference ``rows`` once, in an order shuffled with ``seed``.

    What an RL stage optimises the reward model on when the pipeline trains on
    a real dataset: its own prompts, so the policy is asked what the reward
    model was trained to judge. A prompt is a text or a conversation (a list
    of messages), as the rows hold it.
    """
    import json
    import random

    seen, prompts = set(), []
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            prompts.append(row["prompt"])
    random.Random(seed).shuffle(prompts)
    return prompts

