"""Label preferences yourself: pairs of toy-world responses, a labelling widget, agreement.

Every preference dataset starts with people comparing two responses. In the
Preference Data lab the learner becomes one of those people: they label pairs
of toy-world responses, then see how often they agree with the gold reward
(the hidden "human" of the toy world) and with the simulated annotators.

Read top to bottom:

1. **Pairs**: :func:`make_annotation_pairs` draws two different responses to a
   prompt, half of them far apart in gold reward and half close together.
2. **A session**: :class:`AnnotationSession` keeps the labels in a JSON Lines
   file, one record per click, written and ``fsync``-ed at once. The file is an
   append-only log: a label is ``{"pair_id": ..., "label": "a"}``, and undo
   appends ``{"pair_id": ..., "undo": true}`` instead of rewriting anything.
   Reopening the file replays the log, so a learner whose kernel died resumes
   at the pair they were on.
3. **The widget**: :meth:`AnnotationSession.widget`, a thin skin over the
   session's ``label`` and ``undo``.
4. **Agreement**: :func:`agreement_with_gold` and :func:`agreement_with_annotators`.

    >>> from rlhf_course.toyworld import make_prompts
    >>> pairs = make_annotation_pairs(make_prompts("validation", 10), n=20)
    >>> session = AnnotationSession(pairs, "my_labels.jsonl")   # doctest: +SKIP
    >>> session.widget()                                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import random
import warnings
from datetime import datetime, timezone
from pathlib import Path

import ipywidgets as widgets

from rlhf_course.toyworld import Annotator, Prompt, default_annotators, gold_reward, sample_response

LABELS = ("a", "b", "tie", "skip")
LARGE_MARGIN = 1.0  # a gold margin at least this large makes an easy pair (a wrong answer costs 2.0)
_RECORD_START = b'{"pair_id": '  # how every record this module writes begins


class AnnotationFileError(ValueError):
    """A label file that cannot be used: broken in the middle, or made for other pairs."""


# ----------------------------------------------------------------------------- pairs


def _pair_id(prompt: Prompt, a: str, b: str) -> str:
    """A short id that depends only on the pair's content (and order), so it is stable across runs."""
    digest = hashlib.sha1(f"{prompt.id}\n{a}\n{b}".encode()).hexdigest()
    return f"pair-{digest[:10]}"


def _draw_pair(prompt: Prompt, large: bool, rng: random.Random, tries: int = 100) -> tuple[str, str] | None:
    """Two responses whose gold margin is large (``large=True``) or small but not zero.

    Returns ``None`` if ``tries`` draws found no such pair. Pairs tied in gold
    are never returned: no answer would be right.
    """
    for _ in range(tries):
        a, b = sample_response(prompt, rng), sample_response(prompt, rng)
        margin = abs(gold_reward(prompt, a) - gold_reward(prompt, b))
        if margin > 1e-9 and (margin >= LARGE_MARGIN) == large:
            return a, b
    return None


def make_annotation_pairs(prompts: list[Prompt], n: int, seed: int = 0) -> list[dict]:
    """``n`` pairs of different responses to toy-world prompts, for a person to label.

    Prompts are used in turn. Half of the pairs have a large gold margin (one
    response is clearly worse, e.g. a wrong answer) and half, as far as the
    prompts allow, a small one (a matter of form, tone or padding), in random
    order, so the task is neither trivial nor hopeless. No pair is tied in gold
    reward, and no pair repeats.

    Each pair is a dict with ``pair_id`` (stable for a given content), ``prompt``
    (the text), ``a``, ``b``, ``prompt_id``, ``family``, and ``hidden``: what the
    learner must not see while labelling (the :class:`Prompt` for gold scoring,
    and the gold reward of each response).
    """
    if not prompts:
        raise ValueError("prompts is empty; pass toy-world prompts, e.g. make_prompts('validation', 10).")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    rng = random.Random(f"annotation-pairs/{seed}")
    wants_large = [i % 2 == 0 for i in range(n)]
    rng.shuffle(wants_large)
    pairs: list[dict] = []
    seen: set[tuple] = set()
    for i, large in enumerate(wants_large):
        prompt = prompts[i % len(prompts)]
        for _ in range(20):  # retry a few times when the pair repeats an earlier one
            drawn = _draw_pair(prompt, large, rng) or _draw_pair(prompt, not large, rng)
            if drawn is None:
                continue
            key = (prompt.id, *sorted(drawn))
            if key not in seen:
                break
        else:
            raise ValueError(f"Could not find {n} different pairs for {len(prompts)} prompts; "
                             "pass more prompts or ask for fewer pairs.")
        seen.add(key)
        a, b = drawn
        pairs.append({
            "pair_id": _pair_id(prompt, a, b), "prompt": prompt.text, "a": a, "b": b,
            "prompt_id": prompt.id, "family": prompt.family,
            "hidden": {"prompt": prompt, "gold_a": gold_reward(prompt, a), "gold_b": gold_reward(prompt, b)},
        })
    return pairs


# ----------------------------------------------------------------------------- the label file


def _parse_record(raw: bytes) -> dict:
    """One line of a label file as a record; ``ValueError`` saying why if it is not one."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the line is not valid JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("pair_id"), str):
        raise ValueError("the line is not a label record (it has no 'pair_id')")
    if record.get("undo") is not True and record.get("label") not in LABELS:
        raise ValueError(f"the label {record.get('label')!r} is not one of {', '.join(LABELS)}")
    return record


def _looks_torn(raw: bytes) -> bool:
    """True if ``raw`` is what a write cut short leaves: the start of a record of ours, not yet valid JSON.

    A crash can also leave NUL bytes where the text should be; those count as torn too.
    """
    head = raw.lstrip(b"\x00")[:len(_RECORD_START)]
    if not _RECORD_START.startswith(head):
        return False
    try:
        json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return True
    return False


def _read_log(path: Path) -> tuple[list[dict], int | None]:
    """The records of a label file, and the byte offset of a torn last line (``None`` if there is none).

    A last line cut short is what a crash in the middle of a write leaves
    behind: it is reported as torn, and the records before it are kept. Any
    other broken line means the file was damaged or is not a label file, and
    raises :class:`AnnotationFileError` naming the file and line.
    """
    if not path.exists():
        return [], None
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    records: list[dict] = []
    offset = 0
    for i, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            records.append(_parse_record(raw))
        except ValueError as error:
            if i == last and _looks_torn(raw):
                return records, start
            raise AnnotationFileError(
                f"{path}, line {i + 1}: {error}. This file is damaged or is not a label file; "
                "choose another path for your labels (the file was left as it is).") from None
    return records, None


def _replay(records: list[dict]) -> dict[str, str]:
    """The labels that stand after a log of labels and undos, in the order they were given."""
    labels: dict[str, str] = {}
    for record in records:
        labels.pop(record["pair_id"], None)
        if not record.get("undo"):
            labels[record["pair_id"]] = record["label"]
    return labels


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- the session


class AnnotationSession:
    """A learner labelling ``pairs``, saved to the JSON Lines file ``path`` click by click.

    Opening a session on an existing file resumes it: labelled pairs are
    skipped and :attr:`current` is the first pair still to label. Nothing needs
    closing; every label is on disk once :meth:`label` returns.

    Raises:
        AnnotationFileError: if ``path`` holds labels for other pairs, or is
            broken before its last line. The file is never changed in that case.
    """

    def __init__(self, pairs: list[dict], path: str | os.PathLike) -> None:
        ids = [pair["pair_id"] for pair in pairs]
        if not pairs:
            raise ValueError("pairs is empty; make some with make_annotation_pairs(prompts, n).")
        if len(set(ids)) != len(ids):
            raise ValueError("Two pairs share a pair_id; every pair needs its own.")
        self.pairs = list(pairs)
        self.path = Path(path)
        records, torn_at = _read_log(self.path)
        self._check_belongs(records, set(ids))
        if torn_at is not None:
            self._remove_torn_line(torn_at)
        self._labels = _replay(records)

    def _check_belongs(self, records: list[dict], ids: set[str]) -> None:
        """Refuse a file that holds labels for pairs other than ours (someone else's work)."""
        unknown = [r["pair_id"] for r in records if r["pair_id"] not in ids]
        if unknown:
            raise AnnotationFileError(
                f"{self.path} holds labels for {len(set(unknown))} pair(s) that are not in this session "
                f"(e.g. {unknown[0]!r}): it belongs to another set of pairs. Choose another path for "
                "these pairs; the file was left as it is.")

    def _remove_torn_line(self, offset: int) -> None:
        """Cut off the incomplete last line a crash left, so that new labels start on a fresh line."""
        with open(self.path, "r+b") as f:
            f.seek(offset)
            fragment = f.read()
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        shown = fragment[:80].decode("utf-8", "replace")
        warnings.warn(f"{self.path}: the last line was incomplete (the kernel probably stopped while "
                      f"writing it) and was removed: {shown!r}. The labels before it are kept.", stacklevel=3)

    def _append(self, record: dict) -> None:
        """Add one record to the file and force it to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record) + "\n").encode()
        with open(self.path, "a+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a last line without its newline: finish it first
                    line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # --------------------------------------------------------------- state

    @property
    def labels(self) -> dict[str, str]:
        """``{pair_id: label}`` for the pairs labelled so far, in the order they were labelled."""
        return dict(self._labels)

    @property
    def position(self) -> int:
        """Index in :attr:`pairs` of the pair to label now (``len(pairs)`` when done)."""
        return next((i for i, pair in enumerate(self.pairs) if pair["pair_id"] not in self._labels),
                    len(self.pairs))

    @property
    def current(self) -> dict | None:
        """The pair to label now, or ``None`` when every pair is labelled."""
        i = self.position
        return self.pairs[i] if i < len(self.pairs) else None

    @property
    def done(self) -> bool:
        """True when every pair has a label."""
        return self.current is None

    # --------------------------------------------------------------- actions

    def label(self, choice: str) -> None:
        """Label the current pair: ``"a"`` or ``"b"`` (the better one), ``"tie"`` or ``"skip"``."""
        choice = choice.lower()
        if choice not in LABELS:
            raise ValueError(f"Unknown label {choice!r}; use one of {', '.join(LABELS)}.")
        pair = self.current
        if pair is None:
            raise ValueError("Every pair is already labelled; use undo() to change the last label.")
        self._append({"pair_id": pair["pair_id"], "label": choice, "time": _now()})
        self._labels[pair["pair_id"]] = choice

    def undo(self) -> str | None:
        """Withdraw the last label, so that its pair comes up again; returns its pair_id (``None`` if no label).

        The file keeps the old label and gets a retraction record: nothing written is ever rewritten.
        """
        if not self._labels:
            return None
        pair_id = next(reversed(self._labels))
        self._append({"pair_id": pair_id, "undo": True, "time": _now()})
        del self._labels[pair_id]
        return pair_id

    def summary(self) -> str:
        """One line: how many pairs are labelled, and how."""
        counts = {label: list(self._labels.values()).count(label) for label in LABELS}
        return (f"{len(self._labels)} of {len(self.pairs)} pairs labelled: {counts['a']} A, {counts['b']} B, "
                f"{counts['tie']} tie, {counts['skip']} skipped.")

    def __repr__(self) -> str:
        return f"AnnotationSession({len(self._labels)} of {len(self.pairs)} labelled, path={str(self.path)!r})"

    # --------------------------------------------------------------- the widget

    def widget(self) -> widgets.VBox:
        """An ipywidgets interface: progress, the prompt, responses A and B side by side, buttons.

        Each click calls :meth:`label` (or :meth:`undo`) and shows the next pair;
        at the end a summary replaces the responses. Texts are HTML-escaped.
        """
        progress, prompt = widgets.HTML(), widgets.HTML()
        response_a = widgets.HTML(layout=widgets.Layout(width="50%"))
        response_b = widgets.HTML(layout=widgets.Layout(width="50%"))
        choices = {"a": "A is better", "b": "B is better", "tie": "Tie", "skip": "Skip"}
        choice_buttons = {label: widgets.Button(description=text) for label, text in choices.items()}
        undo_button = widgets.Button(description="Undo last")

        def show() -> None:
            pair = self.current
            for button in choice_buttons.values():
                button.disabled = pair is None
            undo_button.disabled = not self._labels
            if pair is None:
                progress.value = f"<b>Done.</b> {html.escape(self.summary())}"
                prompt.value = "Now compare yourself: <code>agreement_with_gold(session)</code>."
                response_a.value = response_b.value = ""
                return
            progress.value = f"pair {self.position + 1} of {len(self.pairs)}"
            prompt.value = f"<b>Prompt:</b> {html.escape(pair['prompt'])}"
            response_a.value = _response_card("A", pair["a"])
            response_b.value = _response_card("B", pair["b"])

        def on_choice(label: str):
            def click(_button: widgets.Button) -> None:
                self.label(label)
                show()
            return click

        def on_undo(_button: widgets.Button) -> None:
            self.undo()
            show()

        for label, button in choice_buttons.items():
            button.on_click(on_choice(label))
        undo_button.on_click(on_undo)
        show()
        buttons = widgets.HBox([*choice_buttons.values(), undo_button])
        return widgets.VBox([progress, prompt, widgets.HBox([response_a, response_b]), buttons])


def _response_card(name: str, text: str) -> str:
    """A response as a bordered HTML box headed by its name, with the text escaped."""
    return (f'<div style="border:1px solid #ccc; border-radius:4px; padding:6px; margin:4px">'
            f"<b>{name}</b><br>{html.escape(text)}</div>")


# ----------------------------------------------------------------------------- agreement


def _gold_choice(pair: dict) -> str | None:
    """``"a"`` or ``"b"``, whichever response has the higher gold reward; ``None`` for a tie."""
    prompt = pair["hidden"]["prompt"]
    gold_a, gold_b = gold_reward(prompt, pair["a"]), gold_reward(prompt, pair["b"])
    return "a" if gold_a > gold_b else "b" if gold_b > gold_a else None


def _decided(session: AnnotationSession) -> list[tuple[dict, str]]:
    """``(pair, "a" or "b")`` for each pair the learner labelled with a choice (not tie or skip)."""
    by_id = {pair["pair_id"]: pair for pair in session.pairs}
    decided = [(by_id[pair_id], label) for pair_id, label in session.labels.items() if label in ("a", "b")]
    if not decided:
        raise ValueError("No pair is labelled A or B yet; label some pairs first (session.widget()).")
    return decided


def _share(matches: list[bool]) -> float:
    """The fraction of True values (NaN for an empty list)."""
    return sum(matches) / len(matches) if matches else math.nan


def agreement_with_gold(session: AnnotationSession) -> float:
    """The share of the learner's choices that pick the response with the higher gold reward.

    Pairs the learner marked as tie or skipped, and pairs tied in gold, are left out.
    """
    return _share([label == gold for pair, label in _decided(session)
                   if (gold := _gold_choice(pair)) is not None])


def simulated_choice(annotator: Annotator, pair: dict, rng: random.Random) -> str:
    """``"a"`` or ``"b"``: what ``annotator`` picks for ``pair`` (a Bradley–Terry draw)."""
    p = annotator.prob_prefers_first(pair["hidden"]["prompt"], pair["a"], pair["b"])
    return "a" if rng.random() < p else "b"


def agreement_with_annotators(
    session: AnnotationSession,
    annotators: list[Annotator] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """How the learner compares with the simulated annotators, on the pairs the learner decided.

    Each annotator labels the same pairs the learner labelled A or B. Returns
    ``{annotator name: {"with_learner": ..., "with_gold": ...}}``: how often the
    annotator agrees with the learner, and how often with the gold reward (pairs
    tied in gold left out), the latter comparable with
    :func:`agreement_with_gold`. ``pandas.DataFrame(result).T`` makes it a table.
    """
    annotators = default_annotators() if annotators is None else annotators
    names = [annotator.name for annotator in annotators]
    if len(set(names)) != len(names):
        raise ValueError(f"Annotator names must differ; got {names}.")
    decided = _decided(session)
    result = {}
    for annotator in annotators:
        rng = random.Random(f"annotation-agreement/{seed}/{annotator.name}")
        theirs = [simulated_choice(annotator, pair, rng) for pair, _ in decided]
        golds = [_gold_choice(pair) for pair, _ in decided]
        result[annotator.name] = {
            "with_learner": _share([t == label for t, (_, label) in zip(theirs, decided)]),
            "with_gold": _share([t == g for t, g in zip(theirs, golds) if g is not None]),
        }
    return result
