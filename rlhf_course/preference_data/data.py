"""Preference data: the public datasets in the course's format, and a validator.

The course stores preferences in TRL's format. A row is either *standard*

    {"prompt": "Name a colour.", "chosen": " Blue.", "rejected": " Seven."}

or *conversational*, with message lists in place of strings:

    {"prompt":   [{"role": "user", "content": "Name a colour."}],
     "chosen":   [{"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "assistant", "content": "Seven."}]}

Any other column (an annotator, a score, a domain) is metadata: it is kept and
ignored by the trainers.

This file has three parts, read top to bottom:

1. **Adapters** turn the rows of the datasets that seeded the field into that
   format: Anthropic HH-RLHF (:func:`from_hh_rlhf`), Stanford SHP
   (:func:`from_shp`) and UltraFeedback binarized (:func:`from_ultrafeedback`).
   They are pure functions over lists of dicts; :func:`load_preferences` fetches
   a dataset from the Hugging Face hub and maps it through its adapter, and
   :func:`load_preference_files` does the same for local JSON Lines files in
   one of those schemas.
2. **A validator**, :func:`validate_preferences`, finds the malformed rows that
   would otherwise fail deep inside a trainer (or, worse, train silently on
   nonsense) and says which row, which field, what is wrong and what to do.
3. **JSON Lines files**: :func:`read_preferences_jsonl` and
   :func:`write_preferences_jsonl`.

Every stage checks its rows with this one validator (the reward model and the
direct-alignment trainers through :func:`check_training_rows`), so the rules
and the messages are the same everywhere. A message names where the row is:
the file and its line (1-based, as an editor shows it, blank lines counted)
for rows read with :func:`read_preferences_jsonl`, otherwise the row's index in
the list (``row index 0`` is ``rows[0]``).

    >>> rows = [{"prompt": "Name a colour.", "chosen": " Blue.", "rejected": " "}]
    >>> report = validate_preferences(rows, mode="skip")
    >>> print(report.summary())
    data: 1 row checked, 0 kept, 1 dropped.
      empty response: 1 (row index 0)
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

FIELDS = ("prompt", "chosen", "rejected")
ROLES = ("system", "user", "assistant", "tool")
MODES = ("raise", "skip")

SKIP_HINT = "validate_preferences(..., mode='skip') drops such rows and reports them."
ADAPTER_SKIP_HINT = "mode='skip' drops such records with a warning."


# ----------------------------------------------------------------------------- problems


class PreferenceDataError(ValueError):
    """A preference row (or file line) that cannot be used, with where and why in the message."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row.

    Attributes:
        row: index of the row in the list that was checked (0-based, as in ``rows[i]``).
        field: the field at fault (``"prompt"``, ``"chosen"``, ``"rejected"``),
            or ``None`` when the row as a whole is wrong.
        reason: a short category such as ``"empty response"``, used to count problems.
        detail: what is wrong with this row, as a sentence.
        fix: what to do about it, as a sentence.
        line: the row's line in the file it was read from (1-based), or ``None``
            when the rows did not come from :func:`read_preferences_jsonl`.
    """

    row: int
    field: str | None
    reason: str
    detail: str
    fix: str
    line: int | None = None

    @property
    def location(self) -> str:
        """``"line 12"`` for a row read from a file, else ``"row index 11"``."""
        return f"line {self.line}" if self.line is not None else f"row index {self.row}"

    def message(self, source: str, hint: str = "") -> str:
        """The full error message, e.g. ``"data.jsonl, line 12, field 'chosen': the response is empty. ..."``

        ``hint``, when given, is appended to the fix after a semicolon.
        """
        where = f"{source}, {self.location}" + (f", field {self.field!r}" if self.field else "")
        fix = f"{self.fix.rstrip('.')}; {hint}" if hint else self.fix
        return f"{where}: {self.detail} {fix}"


class _Invalid(PreferenceDataError):
    """Raised inside a per-row check; the loop around it adds the source and row index."""

    def __init__(self, field: str | None, reason: str, detail: str, fix: str) -> None:
        super().__init__(f"field {field!r}: {detail} {fix}" if field else f"{detail} {fix}")
        self.field, self.reason, self.detail, self.fix = field, reason, detail, fix

    def at(self, row: int, line: int | None = None) -> Problem:
        """The problem, located at index ``row`` (and at ``line`` of its file, when known)."""
        return Problem(row, self.field, self.reason, self.detail, self.fix, line)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")


class PreferenceRows(list):
    """Rows read from a file: a plain list that also remembers the file and each row's line.

    :func:`read_preferences_jsonl` returns one, so that :func:`validate_preferences`
    can name the line an editor shows (1-based, blank lines counted) rather
    than the row's index. A list made from it (a slice, a filtered copy) is a
    plain list again, whose rows are named by index.
    """

    def __init__(self, rows: Iterable[dict], source: str, lines: list[int]) -> None:
        super().__init__(rows)
        self.source = source
        self.lines = lines

    def line(self, index: int) -> int | None:
        """The line of ``self[index]`` in its file; ``None`` if the list was changed after reading."""
        return self.lines[index] if len(self.lines) == len(self) else None


def _line_of(rows: object, index: int) -> int | None:
    """The file line of ``rows[index]`` when ``rows`` came from a file, else ``None``."""
    return rows.line(index) if isinstance(rows, PreferenceRows) else None


def _source_of(rows: object, source: str | None, default: str = "data") -> str:
    """The name for messages: ``source`` if given, else the file the rows were read from, else ``default``."""
    return source or (rows.source if isinstance(rows, PreferenceRows) else default)


ROWS = "rows (dicts with 'prompt', 'chosen' and 'rejected')"


def _require_rows(rows: object, source: str, what: str = ROWS) -> Iterable:
    """``rows`` if it is a collection of rows; otherwise a ``TypeError`` that says what to pass instead.

    Catches the usual slips before they turn into a bare ``TypeError`` deep
    inside a loop: ``None``, one row instead of a list, a file name, a pandas
    DataFrame (which iterates over its column names). ``what`` describes the
    items expected, for the message.
    """
    expected = f"{source}: expected a list of {what}"
    if rows is None:
        raise TypeError(f"{expected}; got None. Pass the rows themselves, e.g. read_preferences_jsonl(path).")
    if isinstance(rows, Mapping):
        raise TypeError(f"{expected}; got one {type(rows).__name__}. Wrap a single row in a list: [row].")
    if isinstance(rows, (str, bytes, os.PathLike)):
        raise TypeError(f"{expected}; got a {type(rows).__name__}. To read a file, call "
                        "read_preferences_jsonl(path) and pass what it returns.")
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):
        raise TypeError(f"{expected}; got a {type(rows).__name__}, which iterates over its column names. "
                        "Pass df.to_dict('records').")
    if not isinstance(rows, Iterable):
        raise TypeError(f"{expected}; got a value of type {type(rows).__name__}, which is not iterable. "
                        "Pass a list of dicts.")
    return rows


# ----------------------------------------------------------------------------- adapters


def _convert_all(
    records: Iterable[Mapping],
    convert: Callable[[Mapping], dict],
    source: str,
    mode: str,
) -> list[dict]:
    """Apply ``convert`` to every record; raise on the first bad one, or drop bad ones and warn.

    Shared by the adapters, so that all three report problems the same way as
    the validator: source, row, field, what is wrong and what to do.
    """
    _check_mode(mode)
    rows, problems = [], []
    for i, record in enumerate(_require_rows(records, source, "records (dicts) of the dataset")):
        try:
            if not isinstance(record, Mapping):
                raise _Invalid(None, "not a dict", f"the record is a {type(record).__name__}, not a dict.",
                               "Pass the dataset's rows (dicts), e.g. list(dataset).")
            rows.append(convert(record))
        except _Invalid as invalid:
            problem = invalid.at(i)
            if mode == "raise":
                raise PreferenceDataError(problem.message(source, ADAPTER_SKIP_HINT)) from None
            problems.append(problem)
    if problems:
        first = problems[0].message(source)
        warnings.warn(f"{source}: dropped {len(problems)} of {len(rows) + len(problems)} records that could "
                      f"not be converted. The first: {first}", stacklevel=3)
    return rows


def _require(record: Mapping, key: str, kind: type, what: str) -> Any:
    """``record[key]``, checked to be of type ``kind``; ``what`` describes the expected value."""
    if key not in record:
        raise _Invalid(key, "missing field", f"the field is missing; expected {what}.",
                       "Check that the records come from the dataset this adapter is for.")
    value = record[key]
    if not isinstance(value, kind):
        raise _Invalid(key, "wrong type", f"expected {what}; got {type(value).__name__}.",
                       "Check that the records come from the dataset this adapter is for.")
    return value


# --- Anthropic HH-RLHF ------------------------------------------------------

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def hh_messages(transcript: str) -> list[dict]:
    """Split an HH-RLHF transcript (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) into messages.

    ``Human`` becomes the ``user`` role and ``Assistant`` the ``assistant``
    role; the space after each colon and surrounding whitespace are stripped.
    Text before the first turn marker is an error: HH transcripts start with one.
    """
    pieces = _HH_TURN.split(transcript)
    if pieces[0].strip():
        raise _Invalid("chosen", "not a transcript",
                       f"the text before the first '\\n\\nHuman:' is not empty: {pieces[0][:40]!r}.",
                       "HH-RLHF transcripts start with '\\n\\nHuman: '.")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[name], "content": text.strip()} for name, text in zip(pieces[1::2], pieces[2::2])]


def split_hh_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two HH-RLHF transcripts into ``(prompt, chosen_response, rejected_response)``.

    The prompt is the shared prefix up to and including the last
    ``"\\n\\nAssistant:"`` of ``chosen``; the responses are what follows it, so
    ``prompt + chosen_response == chosen``.

    Rule for pairs that diverge earlier than the last turn (the two
    transcripts differ before their final assistant turn, or have a different
    number of turns): such a pair does not compare two answers to one prompt,
    so it is an error; the adapters' ``mode='skip'`` drops it with a warning.
    Raises :class:`PreferenceDataError` naming the field at fault.
    """
    cut = chosen.rfind(HH_ASSISTANT)
    if cut < 0:
        raise _Invalid("chosen", "not a transcript", "the transcript has no '\\n\\nAssistant:' turn.",
                       "HH-RLHF transcripts alternate '\\n\\nHuman: ' and '\\n\\nAssistant: ' turns.")
    end = cut + len(HH_ASSISTANT)
    prompt = chosen[:end]
    if rejected.rfind(HH_ASSISTANT) != cut or rejected[:end] != prompt:
        raise _Invalid("rejected", "transcripts diverge",
                       "chosen and rejected differ before their last assistant turn, so they are not two "
                       "answers to the same prompt.",
                       "Drop the pair.")
    return prompt, chosen[end:], rejected[end:]


def _hh_row(record: Mapping, conversational: bool) -> dict:
    """One HH-RLHF record (two full transcripts) as a course row."""
    chosen = _require(record, "chosen", str, "a transcript string")
    rejected = _require(record, "rejected", str, "a transcript string")
    prompt, chosen_text, rejected_text = split_hh_pair(chosen, rejected)
    if not conversational:
        return {"prompt": prompt, "chosen": chosen_text, "rejected": rejected_text}
    messages = hh_messages(prompt)[:-1]  # the last one is the empty assistant cue
    if not messages or messages[-1]["role"] != "user":
        raise _Invalid("chosen", "not a transcript", "the turn before the last assistant turn is not a human turn.",
                       "HH-RLHF transcripts alternate '\\n\\nHuman: ' and '\\n\\nAssistant: ' turns.")
    return {"prompt": messages,
            "chosen": [{"role": "assistant", "content": chosen_text.strip()}],
            "rejected": [{"role": "assistant", "content": rejected_text.strip()}]}


def from_hh_rlhf(records: Iterable[Mapping], *, conversational: bool = True, mode: str = "raise",
                 source: str = "Anthropic/hh-rlhf") -> list[dict]:
    """Anthropic HH-RLHF rows (``chosen``/``rejected`` full transcripts) in the course format.

    The prompt is the conversation up to the final ``"\\n\\nAssistant:"``, which
    both transcripts share (see :func:`split_hh_pair` for pairs that do not).
    Conversational rows (the default) hold the earlier turns as a message list
    ending with the user's turn; standard rows hold the raw transcript prefix,
    ending with ``"\\n\\nAssistant:"``, and the responses exactly as they follow
    it, so ``row["prompt"] + row["chosen"]`` is the original transcript.

    ``mode='raise'`` stops at the first record that cannot be converted;
    ``mode='skip'`` drops such records and warns how many.
    """
    return _convert_all(records, lambda r: _hh_row(r, conversational), source, mode)


# --- Stanford SHP -----------------------------------------------------------

SHP_METADATA = ("post_id", "domain", "score_ratio")


def _shp_row(record: Mapping, conversational: bool) -> dict:
    """One SHP record (a post and two human replies) as a course row."""
    post = _require(record, "history", str, "the post text")
    a = _require(record, "human_ref_A", str, "the text of reply A")
    b = _require(record, "human_ref_B", str, "the text of reply B")
    label = _require(record, "labels", int, "1 (A preferred) or 0 (B preferred)")
    if label not in (0, 1):
        raise _Invalid("labels", "bad label", f"expected 1 (A preferred) or 0 (B preferred); got {label!r}.",
                       "Check that the records come from stanfordnlp/SHP.")
    a_wins = label == 1
    row = {"prompt": [{"role": "user", "content": post}] if conversational else post,
           "chosen": a if a_wins else b, "rejected": b if a_wins else a}
    if conversational:
        row["chosen"] = [{"role": "assistant", "content": row["chosen"]}]
        row["rejected"] = [{"role": "assistant", "content": row["rejected"]}]
    row.update({key: record[key] for key in SHP_METADATA if key in record})
    for side, winner in (("chosen", a_wins), ("rejected", not a_wins)):
        key = "score_A" if winner else "score_B"
        if key in record:
            row[f"score_{side}"] = record[key]
    return row


def from_shp(records: Iterable[Mapping], *, conversational: bool = True, mode: str = "raise",
             source: str = "stanfordnlp/SHP") -> list[dict]:
    """Stanford SHP rows (a Reddit post, two replies, which one people preferred) in the course format.

    ``labels == 1`` means reply A (``human_ref_A``) was preferred. The post is
    the prompt. Metadata kept: ``post_id``, ``domain`` (the subreddit), and
    ``score_ratio`` (how much more the winner was upvoted: a confidence in the
    label), plus the two replies' scores as ``score_chosen``/``score_rejected``.
    """
    return _convert_all(records, lambda r: _shp_row(r, conversational), source, mode)


# --- UltraFeedback binarized ------------------------------------------------

ULTRAFEEDBACK_METADATA = ("prompt_id", "score_chosen", "score_rejected")


def _final_assistant_turn(record: Mapping, key: str) -> tuple[list, dict]:
    """Split the message list ``record[key]`` into (the prompt messages, the final assistant message)."""
    messages = _require(record, key, list, "a list of messages ending with the assistant's reply")
    if len(messages) < 2 or not all(isinstance(m, Mapping) for m in messages):
        raise _Invalid(key, "bad messages", "expected at least a user message and an assistant message (dicts).",
                       "Check that the records come from HuggingFaceH4/ultrafeedback_binarized.")
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        raise _Invalid(key, "bad messages", "the last message is not an assistant reply with text content.",
                       "Check that the records come from HuggingFaceH4/ultrafeedback_binarized.")
    return [dict(m) for m in messages[:-1]], dict(last)


def _ultrafeedback_row(record: Mapping, conversational: bool) -> dict:
    """One UltraFeedback-binarized record (two full conversations) as a course row."""
    prompt, chosen = _final_assistant_turn(record, "chosen")
    rejected_prompt, rejected = _final_assistant_turn(record, "rejected")
    if rejected_prompt != prompt:
        raise _Invalid("rejected", "conversations diverge",
                       "chosen and rejected differ before the final assistant reply.",
                       "Drop the pair.")
    if conversational:
        row = {"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}
    else:
        if len(prompt) != 1 or prompt[0].get("role") != "user" or not isinstance(prompt[0].get("content"), str):
            raise _Invalid("chosen", "multi-turn prompt",
                           "the prompt is not a single user message, so it has no plain-text form.",
                           "Use conversational=True for multi-turn prompts.")
        row = {"prompt": prompt[0]["content"], "chosen": chosen["content"], "rejected": rejected["content"]}
    row.update({key: record[key] for key in ULTRAFEEDBACK_METADATA if key in record})
    return row


def from_ultrafeedback(records: Iterable[Mapping], *, conversational: bool = True, mode: str = "raise",
                       source: str = "HuggingFaceH4/ultrafeedback_binarized") -> list[dict]:
    """UltraFeedback-binarized rows (``chosen``/``rejected`` full message lists) in the course format.

    The messages before the final assistant turn become the prompt; the final
    assistant turns become ``chosen`` and ``rejected``. With
    ``conversational=False`` a single-turn prompt becomes plain text. Metadata
    kept: ``prompt_id``, ``score_chosen``, ``score_rejected`` (GPT-4 ratings).
    """
    return _convert_all(records, lambda r: _ultrafeedback_row(r, conversational), source, mode)


# --- the hub ----------------------------------------------------------------


@dataclass(frozen=True)
class HubPreferences:
    """A preference dataset on the Hugging Face hub, its splits and its adapter."""

    hub_id: str
    splits: tuple[str, ...]
    adapter: Callable[..., list[dict]]


HUB_PREFERENCES: dict[str, HubPreferences] = {
    "hh-rlhf": HubPreferences("Anthropic/hh-rlhf", ("train", "test"), from_hh_rlhf),
    "shp": HubPreferences("stanfordnlp/SHP", ("train", "validation", "test"), from_shp),
    "ultrafeedback": HubPreferences("HuggingFaceH4/ultrafeedback_binarized", ("train_prefs", "test_prefs"),
                                    from_ultrafeedback),
}


def hub_preferences(name: str) -> HubPreferences:
    """Look up a supported dataset by short name (``"shp"``) or hub id (``"stanfordnlp/SHP"``)."""
    key = name.strip().lower()
    for short, entry in HUB_PREFERENCES.items():
        if key in (short, entry.hub_id.lower()):
            return entry
    supported = ", ".join(f"{short!r} ({entry.hub_id})" for short, entry in HUB_PREFERENCES.items())
    raise ValueError(f"Unknown preference dataset {name!r}. Supported: {supported}.")


def load_preferences(name: str, split: str, n: int | None = None, seed: int = 0,
                     conversational: bool = True) -> list[dict]:
    """Load a hub preference dataset in the course format (needs the network, or the hub cache).

    ``name`` is a short name or hub id from :data:`HUB_PREFERENCES`. With ``n``,
    a random subset of ``n`` records (fixed by ``seed``) is converted instead
    of the whole split. Records the adapter cannot convert and rows the
    validator rejects (HH-RLHF, for instance, has a few empty responses) are
    dropped with a warning that says how many and why, so slightly fewer than
    ``n`` rows may come back.
    """
    entry = hub_preferences(name)
    if split not in entry.splits:
        raise ValueError(f"{entry.hub_id} has no split {split!r}; use one of {', '.join(entry.splits)}.")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of rows or None (all); got {n}.")
    from datasets import load_dataset

    data = load_dataset(entry.hub_id, split=split)
    return _adapted(entry, data, entry.hub_id, n, seed, conversational, "skip")


def load_preference_files(name: str, data_files: str | os.PathLike | Sequence[str | os.PathLike], *,
                          n: int | None = None, seed: int = 0, conversational: bool = True,
                          mode: str = "skip") -> list[dict]:
    """Local JSON Lines files in a hub dataset's schema, in the course format: :func:`load_preferences` offline.

    ``name`` says which schema the files follow (a short name or hub id from
    :data:`HUB_PREFERENCES`, e.g. ``"ultrafeedback"`` or ``"hh-rlhf"``). The files
    are read with ``datasets.load_dataset("json", data_files=...)``, as a copy of
    the dataset saved with ``dataset.to_json(path)`` would be, then converted by
    the same adapter and checked by the same validator as the hub copy. With
    ``mode="skip"`` (the default, as for the hub) records that cannot be used are
    dropped with a warning; with ``mode="raise"`` the first one is an error
    naming the file, the record (its 0-based index over the files in order) and
    the field. A file that ``datasets`` cannot read (not JSON Lines, or a field
    whose type changes from line to line) is an error naming the file.
    """
    entry = hub_preferences(name)
    _check_mode(mode)
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of rows or None (all); got {n}.")
    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise ValueError(f"data_files is empty; pass one or more JSON Lines files in the {entry.hub_id} schema.")
    for file in files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"{file} does not exist; pass JSON Lines files in the {entry.hub_id} schema.")
    source = ", ".join(Path(file).name for file in files)
    from datasets import load_dataset

    try:
        data = load_dataset("json", data_files=[str(file) for file in files], split="train")
    except Exception as error:  # datasets wraps Arrow's JSON errors in its own types, which vary by version
        cause = error.__cause__ or error
        raise PreferenceDataError(
            f"{source}: datasets could not read the file as JSON Lines ({type(cause).__name__}: {cause}). Each "
            f"line must be one JSON object, and a field must have the same type on every line "
            f"(the {entry.hub_id} schema).") from error
    return _adapted(entry, data, source, n, seed, conversational, mode)


def _adapted(entry: HubPreferences, data, source: str, n: int | None, seed: int, conversational: bool,
             mode: str) -> list[dict]:
    """A ``datasets.Dataset`` in ``entry``'s schema as validated course rows (a random ``n`` of them if given)."""
    if n is not None:
        data = data.shuffle(seed=seed).select(range(min(n, len(data))))
    rows = entry.adapter(list(data), conversational=conversational, mode=mode, source=source)
    report = validate_preferences(rows, source=source, mode=mode)
    if report.dropped:
        warnings.warn(report.summary(), stacklevel=3)
    return report.rows


# ----------------------------------------------------------------------------- the validator


@dataclass
class ValidationReport:
    """What :func:`validate_preferences` found.

    Attributes:
        source: the name used in messages (a file name, a dataset id).
        rows: the rows that passed, in their original order (the same objects,
            not copies). In ``mode='raise'`` this is every row.
        dropped: one :class:`Problem` per rejected row (the first found in it).
        n_checked: how many rows were checked.
        length_unit: how prompt lengths were counted: ``"tokens"`` (with the
            tokenizer) or ``"whitespace words"``.
    """

    source: str
    rows: list[dict] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)
    n_checked: int = 0
    length_unit: str = "whitespace words"

    @property
    def ok(self) -> bool:
        """True when no row was dropped."""
        return not self.dropped

    def counts(self) -> dict[str, int]:
        """Number of dropped rows per reason, most common first."""
        return dict(Counter(p.reason for p in self.dropped).most_common())

    def summary(self, max_rows: int = 5) -> str:
        """Counts by reason, with where the first few of each are, one reason a line."""
        def plural(k: int) -> str:
            return f"{k} row" + ("" if k == 1 else "s")
        lines = [f"{self.source}: {plural(self.n_checked)} checked, {len(self.rows)} kept, "
                 f"{len(self.dropped)} dropped."]
        for reason, count in self.counts().items():
            found = [p for p in self.dropped if p.reason == reason]
            lines.append(f"  {reason}: {count} ({_places(found, max_rows)})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _places(problems: list[Problem], most: int) -> str:
    """Where ``problems`` are, briefly: ``"lines 3, 8"`` or ``"row indices 1, 5, ..."``."""
    in_file = problems[0].line is not None
    numbers = [p.line if in_file else p.row for p in problems]
    shown = ", ".join(map(str, numbers[:most])) + (", ..." if len(numbers) > most else "")
    one, many = ("line", "lines") if in_file else ("row index", "row indices")
    return f"{one if len(numbers) == 1 else many} {shown}"


def validate_preferences(
    rows: Iterable[Mapping],
    *,
    source: str | None = None,
    max_prompt_tokens: int | None = None,
    tokenizer=None,
    mode: str = "raise",
) -> ValidationReport:
    """Check preference rows before training on them; return a :class:`ValidationReport`.

    Each row must have ``prompt``, ``chosen`` and ``rejected``, all standard
    (strings) or all conversational (lists of ``{"role", "content"}`` messages,
    the prompt ending with a user message, each response starting with an
    assistant message), and every row must be in the format of the first good
    row: a dataset holds one format, and Arrow cannot build one from both.
    Responses must not be empty or whitespace, chosen and rejected must differ
    (ignoring surrounding whitespace, see :func:`same_response`), and with
    ``max_prompt_tokens`` the prompt must not be longer than that. Lengths are
    counted with ``tokenizer`` when one is given (through its chat template for
    conversational prompts), otherwise as whitespace-separated words; the
    message says which. Other columns are metadata and are not checked.

    ``source`` names the data in messages; it defaults to the file for rows
    from :func:`read_preferences_jsonl` (whose messages then name the line),
    else ``"data"``. ``rows`` that are not a collection of rows (``None``, a
    single dict, a file name) raise a ``TypeError`` that says what to pass.

    ``mode='raise'`` (the default) raises :class:`PreferenceDataError` at the
    first problem, naming the source, the line or row index, the field, what is
    wrong and what to do; otherwise the report holds every row. ``mode='skip'``
    never raises for bad rows: ``report.rows`` holds the rows that passed and
    ``report.dropped`` the reason for each dropped one; ``report.summary()``
    counts them. The input rows are never modified.

        report = validate_preferences(rows, max_prompt_tokens=profile.max_prompt_tokens,
                                      tokenizer=tokenizer, mode="skip")
        print(report.summary())
        rows = report.rows
    """
    _check_mode(mode)
    source = _source_of(rows, source)
    report = ValidationReport(source, length_unit="tokens" if tokenizer is not None else "whitespace words")
    first: tuple[str, str] | None = None  # the format of the first good row, and where that row is
    for i, row in enumerate(_require_rows(rows, source)):
        report.n_checked += 1
        line = _line_of(rows, i)
        try:
            kind = _check_row(row, max_prompt_tokens=max_prompt_tokens, tokenizer=tokenizer)
            _check_same_format(kind, first)
        except _Invalid as invalid:
            problem = invalid.at(i, line)
            if mode == "raise":
                raise PreferenceDataError(problem.message(source, SKIP_HINT)) from None
            report.dropped.append(problem)
        else:
            first = first or (kind, f"line {line}" if line is not None else f"row index {i}")
            report.rows.append(row)
    return report


def _check_same_format(kind: str, first: tuple[str, str] | None) -> None:
    """Raise ``_Invalid`` unless a row of format ``kind`` matches the first good row's format."""
    if first is None or kind == first[0]:
        return
    raise _Invalid("prompt", "mixed formats",
                   f"this row is {_described(kind)} but the first row ({first[1]}) is {_described(first[0])}; "
                   "one dataset holds one format (Arrow cannot build a column from both).",
                   "Convert every row to one format (the adapters take conversational=True or False).")


def check_training_rows(rows: Iterable[Mapping], *, source: str | None = None) -> list[dict]:
    """The rows a trainer is about to use, validated: raise at the first bad row, or if there is none.

    Every stage that trains on preference pairs (the reward model, DPO and its
    family) calls this, so each applies :func:`validate_preferences`'s rules and
    messages, and none fails later inside Arrow or TRL with a bare ``KeyError``.
    """
    report = validate_preferences(rows, source=_source_of(rows, source, "preference data"))
    if not report.rows:
        raise PreferenceDataError(f"{report.source}: no rows; training needs at least one preference pair. "
                                  "Pass a non-empty list of rows.")
    return report.rows


def _check_row(row: Any, *, max_prompt_tokens: int | None = None, tokenizer=None) -> str:
    """Check one row and return its format, ``"standard"`` or ``"conversational"``.

    Raises ``_Invalid`` (caught by :func:`validate_preferences`, which adds the
    source and row index) at the first problem. The checks run from the row's shape down
    to its content, so the message is about the most basic thing that is wrong.
    """
    if not isinstance(row, Mapping):
        raise _Invalid(None, "not a dict", f"the row is a {type(row).__name__}, not a dict.",
                       "Each row is a dict with 'prompt', 'chosen' and 'rejected'.")
    kinds = {name: _field_kind(row, name) for name in FIELDS}
    kind = kinds["prompt"]
    for name in ("chosen", "rejected"):
        if kinds[name] != kind:
            raise _Invalid(name, "mixed formats",
                           f"the prompt is {_described(kind)} but {name} is {_described(kinds[name])}.",
                           "Use strings for all three fields or message lists for all three.")
    if kind == "conversational":
        _check_messages(row["prompt"], "prompt", "user", last=True)
        _check_messages(row["chosen"], "chosen", "assistant", last=False)
        _check_messages(row["rejected"], "rejected", "assistant", last=False)
    texts = {name: field_text(row[name]) for name in FIELDS}
    if not texts["prompt"].strip():
        raise _Invalid("prompt", "empty prompt", "the prompt is empty.", "Remove the row or fill it in.")
    for name in ("chosen", "rejected"):
        if not texts[name].strip():
            raise _Invalid(name, "empty response", "the response is empty.", "Remove the row or fill it in.")
    if same_response(row["chosen"], row["rejected"]):
        raise _Invalid("rejected", "identical responses",
                       "chosen and rejected are the same (ignoring surrounding whitespace), so the pair "
                       "carries no preference.", "Remove the row.")
    if max_prompt_tokens is not None:
        length = prompt_length(row["prompt"], tokenizer)
        if length > max_prompt_tokens:
            unit = ("tokens, counted with the tokenizer" if tokenizer is not None else
                    "whitespace-separated words (no tokenizer was given; pass tokenizer= to count tokens)")
            raise _Invalid("prompt", "prompt too long",
                           f"the prompt has {length} {unit}, more than max_prompt_tokens={max_prompt_tokens}.",
                           "Remove the row, shorten the prompt, or raise max_prompt_tokens (trainers "
                           "truncate longer prompts).")
    return kind


def _field_kind(row: Mapping, name: str) -> str:
    """``"standard"`` for a string, ``"conversational"`` for a list; a missing or other value is an error."""
    if name not in row:
        hint = (" If each row holds whole transcripts (an implicit prompt), split off the prompt first, "
                "e.g. with from_hh_rlhf." if name == "prompt" else "")
        raise _Invalid(name, "missing field", "the field is missing.",
                       f"Every row needs 'prompt', 'chosen' and 'rejected'.{hint}")
    value = row[name]
    if isinstance(value, str):
        return "standard"
    if isinstance(value, list):
        return "conversational"
    raise _Invalid(name, "wrong type", f"expected a string or a list of messages; got {type(value).__name__}.",
                   "Convert the value to text (standard format) or to role/content messages (conversational).")


def _described(kind: str) -> str:
    return "a string (standard format)" if kind == "standard" else "a list of messages (conversational format)"


def _check_messages(messages: list, name: str, role: str, last: bool) -> None:
    """Every item is a ``{"role", "content"}`` dict with a known role and text content.

    ``role`` is required of the last message when ``last`` is true (a prompt
    ends with the user's turn), else of the first (a response starts with the
    assistant's turn).
    """
    fix = 'Each message is a dict like {"role": "user", "content": "..."}.'
    if not messages:
        raise _Invalid(name, "bad message", "the message list is empty.", f"Add at least one {role} message.")
    for j, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise _Invalid(name, "bad message", f"message {j} is a {type(message).__name__}, not a dict.", fix)
        for key in ("role", "content"):
            if key not in message:
                raise _Invalid(name, "bad message", f"message {j} has no {key!r}.", fix)
        if not isinstance(message["role"], str) or message["role"] not in ROLES:
            raise _Invalid(name, "bad message",
                           f"message {j} has role {message['role']!r}; roles are {', '.join(ROLES)}.",
                           "Rename the role (HH-RLHF's 'Human'/'Assistant' are 'user'/'assistant').")
        if not isinstance(message["content"], str):
            raise _Invalid(name, "bad message",
                           f"message {j} has content of type {type(message['content']).__name__}, not text.", fix)
    position, index = ("last", -1) if last else ("first", 0)
    if messages[index]["role"] != role:
        raise _Invalid(name, "bad message",
                       f"the {position} message is from {messages[index]['role']!r}, not from {role!r}.",
                       "A prompt ends with the user's turn and a response starts with the assistant's.")


def field_text(value: str | list) -> str:
    """The text of a field: the string itself, or the messages' contents joined by newlines.

    Trainers that take plain text use it for a conversational response (one
    assistant message: its content).
    """
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


def _normalised(value: str | list) -> str | list[tuple[str, str]]:
    """A field with surrounding whitespace removed, for comparing chosen with rejected."""
    return value.strip() if isinstance(value, str) else [(m["role"], m["content"].strip()) for m in value]


def same_response(chosen: str | list, rejected: str | list) -> bool:
    """Whether two responses are the same but for surrounding whitespace: such a pair carries no preference.

    The validator's rule; code that builds pairs (online DPO) uses it too, so
    it never makes a pair that the validator would reject.
    """
    return _normalised(chosen) == _normalised(rejected)


def prompt_length(prompt: str | list, tokenizer=None) -> int:
    """The prompt's length: tokens with ``tokenizer``, else whitespace-separated words.

    A conversational prompt is rendered with the tokenizer's chat template
    (with the assistant cue), as the trainers will see it, when the tokenizer
    has one; otherwise its messages' contents are counted.
    """
    if tokenizer is None:
        return len(field_text(prompt).split())
    if isinstance(prompt, list) and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    else:
        text = field_text(prompt)
    return len(tokenizer.encode(text, add_special_tokens=False))


# ----------------------------------------------------------------------------- JSON Lines files


def read_preferences_jsonl(path: str | Path) -> PreferenceRows:
    """Read a JSON Lines file: one JSON object (a row) per line; blank lines are skipped.

    The file must be UTF-8 (a byte-order mark, as spreadsheets write, is
    allowed). A line that is not UTF-8 or not one JSON object raises
    :class:`PreferenceDataError` naming the file and the line (1-based, as an
    editor shows it). The rows are not validated: pass what this returns to
    :func:`validate_preferences`, whose messages then name the file and line too.
    """
    path = Path(path)
    rows, lines = [], []
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            line = _decoded(raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw, path, number)
            if line.strip():
                rows.append(_parsed(line, path, number))
                lines.append(number)
    return PreferenceRows(rows, path.name, lines)


def _decoded(raw: bytes, path: Path, number: int) -> str:
    """Line ``number`` of ``path`` as text; a byte that is not UTF-8 is named, with what to do."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PreferenceDataError(
            f"{path.name}, line {number}: byte {raw[error.start]:#04x} at column {error.start + 1} is not "
            "UTF-8 (the file was probably saved in another encoding, such as Windows-1252 or Latin-1). "
            "Save the file as UTF-8 (a spreadsheet's 'CSV UTF-8' export, or "
            "`iconv -f cp1252 -t utf-8 in.jsonl > out.jsonl`)."
        ) from None


def _parsed(line: str, path: Path, number: int) -> dict:
    """Line ``number`` of ``path`` as a row (a JSON object), or an error naming the line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise PreferenceDataError(f"{path.name}, line {number}: not valid JSON ({error.msg} at column "
                                  f"{error.colno}). Each line must be one JSON object.") from None
    if not isinstance(row, dict):
        raise PreferenceDataError(f"{path.name}, line {number}: a JSON {type(row).__name__}, not an "
                                  "object. Each line must be one JSON object (a row).")
    return row


def write_preferences_jsonl(rows: Iterable[Mapping], path: str | Path) -> Path:
    """Write rows as JSON Lines, atomically: a crash or a bad row leaves the old file, never half of one.

    The rows go to a temporary file in the same folder, which is then renamed
    over ``path``. Every line is valid JSON: NumPy numbers and arrays become
    Python ones, and NaN, which NumPy and pandas use for a missing number,
    becomes ``null``, JSON's missing value (it reads back as ``None``). A value
    JSON cannot hold (infinity, an object, text with a lone surrogate that
    UTF-8 cannot encode) raises :class:`PreferenceDataError` naming the row
    index and the field, and the earlier file is kept. Returns the path written.
    """
    path = Path(path)
    rows = _require_rows(rows, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for i, row in enumerate(rows):
                file.write(_json_line(row, i, path.name))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_line(row: Any, index: int, source: str) -> str:
    """Row ``index`` as one line of JSON; what JSON cannot hold raises an error naming the row and field."""
    try:
        if not isinstance(row, Mapping):
            raise _Invalid(None, "not a dict", f"the row is a {type(row).__name__}, not a dict.",
                           "Each row is a dict with 'prompt', 'chosen' and 'rejected'.")
        ready = {str(key): _json_ready(value, str(key)) for key, value in row.items()}
    except _Invalid as invalid:
        raise PreferenceDataError(invalid.at(index).message(source) + " Nothing was written; the earlier file, "
                                  "if any, is unchanged.") from None
    return json.dumps(ready, ensure_ascii=False, allow_nan=False) + "\n"


def _json_ready(value: Any, field: str) -> Any:
    """``value`` with NumPy values as Python ones and NaN as ``None``; anything else JSON cannot hold raises."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return None
        raise _Invalid(field, "not JSON", f"the value is {value}, which JSON cannot represent.",
                       "Replace it with a finite number, or with None if it is missing.")
    if isinstance(value, str):
        _check_encodable(value, field)
    elif isinstance(value, Mapping):
        return {str(key): _json_ready(item, field) for key, item in value.items()}
    elif isinstance(value, (list, tuple)):
        return [_json_ready(item, field) for item in value]
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise _Invalid(field, "not JSON", f"a value of type {type(value).__name__} cannot be written as JSON.",
                       "Convert it to text, a number, a list or a dict.")
    return value


def _check_encodable(text: str, field: str) -> None:
    """Raise ``_Invalid`` naming ``field`` if ``text`` holds a character UTF-8 cannot encode (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _Invalid(field, "not UTF-8",
                       f"character {text[error.start]!r} at position {error.start} cannot be written as UTF-8 "
                       "(a lone surrogate, often left by decoding bytes with errors='surrogateescape').",
                       "Decode the source text with its real encoding, or remove the character.") from None
