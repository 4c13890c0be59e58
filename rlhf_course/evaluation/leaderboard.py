"""Leaderboards from pairwise votes: any judge, a Bradley–Terry fit, intervals over prompts.

An arena (Chatbot Arena, Chiang et al. 2024) shows two policies' answers to the
same prompt to a judge, records which it prefers, and fits Bradley–Terry
strengths to all the votes: policy ``i`` beats ``j`` with probability
``sigmoid(theta_i - theta_j)``. The fit is the course's own
(:func:`rlhf_course.what_are_preferences.fit_bradley_terry`); this module turns
a judge's votes into its input and adds intervals by resampling prompts.

A *judge* is anything with the pairwise-judge method of TRL's former
``BasePairwiseJudge`` (``judge(prompts, completions) -> list[int]``: for each
prompt the index, 0 or 1, of the preferred of its two completions, -1 for a
tie). Two small ones live here so the chapter stands on its own:
:class:`ScoreJudge` (prefers the higher score of any scoring function: gold,
a reward model, a language model's likelihood) and :class:`AnnotatorJudge`
(the toy world's simulated people). The course's judges module provides more.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from rlhf_course.evaluation.metrics import Interval
from rlhf_course.toyworld import Annotator, Prompt
from rlhf_course.what_are_preferences import fit_bradley_terry, kendall_tau, log_strength_to_elo

__all__ = ["AnnotatorJudge", "agreement", "PairwiseJudge", "ScoreJudge", "Votes", "bradley_terry_from_counts", "leaderboard",
           "pairwise_votes", "rank_agreement", "win_counts"]


class PairwiseJudge(Protocol):
    """What a judge must offer: for each prompt, 0 or 1 for the preferred completion, -1 for a tie."""

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True) -> list[int]: ...


def _key(prompt: Prompt | str) -> str:
    return prompt.id if isinstance(prompt, Prompt) else str(prompt)


class ScoreJudge:
    """Prefers the completion with the higher score; a tie when the scores differ by at most ``tie_margin``.

    ``score_fn(prompts, completions)`` returns one number per (prompt,
    completion); it receives the prompts as they were given to :meth:`judge`
    (toy-world ``Prompt`` objects for gold). Each distinct (prompt, completion)
    is scored once per call, however many pairs it appears in. The order of
    the two completions cannot matter to such a judge, so ``shuffle_order``
    changes nothing.
    """

    def __init__(self, score_fn: Callable[[list, list[str]], Sequence[float]], tie_margin: float = 0.0):
        self.score_fn, self.tie_margin = score_fn, tie_margin

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True) -> list[int]:
        _check_pairs(prompts, completions)
        unique: dict[tuple[str, str], int] = {}
        items: list[tuple[Prompt | str, str]] = []
        for prompt, pair in zip(prompts, completions):
            for text in pair:
                if (_key(prompt), text) not in unique:
                    unique[(_key(prompt), text)] = len(items)
                    items.append((prompt, text))
        scores = np.asarray(self.score_fn([p for p, _ in items], [t for _, t in items]), dtype=np.float64)
        if scores.shape != (len(items),):
            raise ValueError(f"score_fn returned shape {scores.shape} for {len(items)} completions; "
                             "it must return one score per completion.")
        out = []
        for prompt, (a, b) in zip(prompts, completions):
            diff = scores[unique[(_key(prompt), a)]] - scores[unique[(_key(prompt), b)]]
            out.append(-1 if abs(diff) <= self.tie_margin else 0 if diff > 0 else 1)
        return out


class AnnotatorJudge:
    """A simulated person (or a pool of them) voting with the Bradley–Terry probability of the toy world.

    Each vote comes from an annotator drawn at random from ``annotators``;
    votes are random, so a judge with a ``seed`` gives the same votes in the
    same order of calls. Prompts must be toy-world ``Prompt`` objects.
    """

    def __init__(self, annotators: Annotator | Sequence[Annotator], seed: int = 0):
        self.annotators = [annotators] if isinstance(annotators, Annotator) else list(annotators)
        if not self.annotators:
            raise ValueError("AnnotatorJudge needs at least one Annotator.")
        self.rng = random.Random(f"annotator-judge/{seed}")

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True) -> list[int]:
        _check_pairs(prompts, completions)
        out = []
        for prompt, (a, b) in zip(prompts, completions):
            if not isinstance(prompt, Prompt):
                raise ValueError("AnnotatorJudge needs toy-world Prompt objects (it reads their gold attributes); "
                                 f"got {type(prompt).__name__}.")
            p = self.rng.choice(self.annotators).prob_prefers_first(prompt, a, b)
            out.append(-1 if a == b else 0 if self.rng.random() < p else 1)
        return out


def _check_pairs(prompts: list, completions: list[list[str]]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"a judge needs one pair of completions per prompt; got {len(prompts)} prompts and "
                         f"{len(completions)} pairs.")
    bad = next((i for i, pair in enumerate(completions) if len(pair) != 2), None)
    if bad is not None:
        raise ValueError(f"completions[{bad}] holds {len(completions[bad])} completions; a pairwise judge "
                         "compares exactly two.")


@dataclass(frozen=True)
class Votes:
    """A judge's votes: vote ``v`` compared policies ``first[v]`` and ``second[v]`` on prompt ``prompt[v]``.

    ``prompt`` holds cluster indices ``0 .. n_prompts - 1`` (distinct prompts),
    the unit that intervals resample.

    ``winner[v]`` is 0 when the first won, 1 when the second did, -1 for a tie.
    """

    names: tuple[str, ...]
    n_prompts: int
    first: np.ndarray
    second: np.ndarray
    prompt: np.ndarray
    winner: np.ndarray

    @property
    def tie_rate(self) -> float:
        """Share of votes that were ties."""
        return float(np.mean(self.winner == -1))

    def restrict(self, prompts: Sequence[int]) -> "Votes":
        """The votes on the given prompts (cluster indices) only, the prompts renumbered from 0."""
        keep = np.asarray(sorted(set(int(p) for p in prompts)))
        if keep.size == 0 or keep.min() < 0 or keep.max() >= self.n_prompts:
            raise ValueError(f"restrict needs prompt indices in 0..{self.n_prompts - 1}; got {list(prompts)[:5]}...")
        mask = np.isin(self.prompt, keep)
        return Votes(self.names, len(keep), self.first[mask], self.second[mask],
                     np.searchsorted(keep, self.prompt[mask]), self.winner[mask])


def agreement(votes: Votes, reference: Votes) -> float:
    """Share of the reference's decisive votes on which the judge picked the same winner (a judge's tie: half).

    The two must be votes on the same schedule (the same prompts, pairs and
    order), as :func:`pairwise_votes` gives for the same inputs.
    """
    if votes.names != reference.names or len(votes.winner) != len(reference.winner) or \
            not (np.array_equal(votes.first, reference.first) and np.array_equal(votes.prompt, reference.prompt)):
        raise ValueError("agreement needs two judges' votes on the same schedule of prompts and pairs.")
    decisive = reference.winner >= 0
    if not decisive.any():
        raise ValueError("the reference judge tied every vote; there is nothing to agree with.")
    same = (votes.winner == reference.winner) + 0.5 * (votes.winner == -1)
    return float(same[decisive].mean())


def pairwise_votes(
    judge: PairwiseJudge,
    prompts: Sequence[Prompt | str],
    responses: Mapping[str, Sequence[str]],
    pairs: Sequence[tuple[str, str]] | None = None,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> Votes:
    """Ask ``judge`` about every pair of policies on every prompt (an arena with a balanced schedule).

    ``responses[name][t]`` is policy ``name``'s answer to ``prompts[t]``.
    Which answer is shown first is decided by a coin for each vote, as arenas
    do, so a judge that favours a position cannot favour a policy; votes are
    mapped back to the policies afterwards. ``pairs`` restricts the schedule
    (default: all pairs). When a prompt appears several times, ``clusters[t]``
    names the prompt of entry ``t`` (e.g. its id), so that intervals resample
    prompts, not answers.
    """
    names = tuple(responses)
    if len(names) < 2:
        raise ValueError(f"a leaderboard needs at least two policies; got {list(names)}.")
    short = [n for n in names if len(responses[n]) != len(prompts)]
    if short:
        raise ValueError(f"policy {short[0]!r} has {len(responses[short[0]])} responses for {len(prompts)} prompts; "
                         "give every policy one response per prompt, in the order of the prompts.")
    index = {n: i for i, n in enumerate(names)}
    schedule = list(itertools.combinations(names, 2)) if pairs is None else list(pairs)
    unknown = [n for pair in schedule for n in pair if n not in index]
    if unknown:
        raise ValueError(f"pairs names {unknown[0]!r}, which is not among the policies {list(names)}.")
    rng = np.random.default_rng(seed)
    first, second, prompt_index, swap = [], [], [], []
    for a, b in schedule:
        first += [index[a]] * len(prompts)
        second += [index[b]] * len(prompts)
        prompt_index += list(range(len(prompts)))
        swap += rng.random(len(prompts)).tolist()
    swapped = np.array(swap) < 0.5
    shown = [[responses[names[j]][t], responses[names[i]][t]] if s else [responses[names[i]][t], responses[names[j]][t]]
             for i, j, t, s in zip(first, second, prompt_index, swapped)]
    raw = np.asarray(judge.judge([prompts[t] for t in prompt_index], shown), dtype=np.int64)
    winner = np.where((raw >= 0) & swapped, 1 - raw, raw)
    if clusters is None:
        cluster_of, n_clusters = np.arange(len(prompts)), len(prompts)
    elif len(clusters) != len(prompts):
        raise ValueError(f"clusters must name one cluster per prompt; got {len(clusters)} for {len(prompts)} prompts.")
    else:
        uniques, cluster_of = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
        n_clusters = len(uniques)
    return Votes(names, n_clusters, np.array(first), np.array(second), cluster_of[np.array(prompt_index)], winner)


def _per_prompt_counts(votes: Votes) -> np.ndarray:
    """``C[t, i, j]``: wins of ``i`` over ``j`` on prompt ``t``, a tie counting half to each."""
    counts = np.zeros((votes.n_prompts, len(votes.names), len(votes.names)))
    won_first, won_second, tie = votes.winner == 0, votes.winner == 1, votes.winner == -1
    np.add.at(counts, (votes.prompt[won_first], votes.first[won_first], votes.second[won_first]), 1.0)
    np.add.at(counts, (votes.prompt[won_second], votes.second[won_second], votes.first[won_second]), 1.0)
    np.add.at(counts, (votes.prompt[tie], votes.first[tie], votes.second[tie]), 0.5)
    np.add.at(counts, (votes.prompt[tie], votes.second[tie], votes.first[tie]), 0.5)
    return counts


def win_counts(votes: Votes) -> np.ndarray:
    """``W[i, j]``: how often policy ``i`` beat ``j`` over all prompts (ties half)."""
    return _per_prompt_counts(votes).sum(axis=0)


def bradley_terry_from_counts(counts: np.ndarray, prior: float = 0.5) -> np.ndarray:
    """Centred Bradley–Terry log-strengths from a win-count matrix (half wins allowed).

    The counts are doubled to whole numbers and handed to the course's fit as
    ``(winner, loser)`` comparisons; doubling every count does not move the
    maximum-likelihood strengths. ``prior`` virtual wins each way between every
    pair keep a policy that never lost finite.
    """
    doubled = np.rint(2 * np.asarray(counts, dtype=np.float64)).astype(np.int64)
    pairs = np.argwhere(doubled > 0)
    comparisons = np.repeat(pairs, doubled[pairs[:, 0], pairs[:, 1]], axis=0)
    return fit_bradley_terry(comparisons, len(counts), prior=2 * prior)


def _bootstrap_strengths(counts: np.ndarray, n_boot: int, seed: int, prior: float) -> np.ndarray:
    """Bradley–Terry strengths refitted on ``n_boot`` resamples of the prompts; shape ``(n_boot, K)``."""
    rng = np.random.default_rng(seed)
    n_prompts = len(counts)
    out = []
    for _ in range(n_boot):
        weights = np.bincount(rng.integers(0, n_prompts, n_prompts), minlength=n_prompts)
        out.append(bradley_terry_from_counts(np.tensordot(weights, counts, axes=1), prior))
    return np.array(out)


def leaderboard(votes: Votes, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                prior: float = 0.5) -> pd.DataFrame:
    """The Bradley–Terry leaderboard of a judge's votes, best first, with bootstrap intervals over prompts.

    Columns: ``policy``, ``rating`` (Elo scale, mean 1000: 400 points are a
    factor 10 in odds), ``low`` and ``high`` (the interval of the rating),
    ``win_rate`` (against all the others, ties half) and ``rank``.
    """
    counts = _per_prompt_counts(votes)
    theta = bradley_terry_from_counts(counts.sum(axis=0), prior)
    boot = _bootstrap_strengths(counts, n_boot, seed, prior)
    tail = (1 - level) / 2
    low, high = np.quantile(np.array([log_strength_to_elo(t, 1000.0) for t in boot]), [tail, 1 - tail], axis=0)
    total = counts.sum(axis=0)
    table = pd.DataFrame({
        "policy": votes.names,
        "rating": log_strength_to_elo(theta, mean=1000.0),
        "low": low,
        "high": high,
        "win_rate": total.sum(axis=1) / (total + total.T).sum(axis=1),
    }).sort_values("rating", ascending=False, ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def rank_agreement(votes: Votes, reference: Votes, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                   prior: float = 0.5) -> Interval:
    """Kendall's tau between the Bradley–Terry rankings of two judges, with a bootstrap interval.

    Both judges' votes must cover the same policies on the same prompts (as
    :func:`pairwise_votes` with the same prompts and responses gives). Every
    replicate resamples the prompts once and refits *both* judges on them, so
    the interval carries the noise of both leaderboards.
    """
    if votes.names != reference.names or votes.n_prompts != reference.n_prompts:
        raise ValueError("rank_agreement needs two judges' votes on the same policies and prompts; got "
                         f"{list(votes.names)} on {votes.n_prompts} prompts and {list(reference.names)} on "
                         f"{reference.n_prompts}.")
    a, b = _per_prompt_counts(votes), _per_prompt_counts(reference)
    estimate = kendall_tau(bradley_terry_from_counts(a.sum(0), prior), bradley_terry_from_counts(b.sum(0), prior))
    boot_a = _bootstrap_strengths(a, n_boot, seed, prior)  # the same seed: the same resamples of the prompts
    boot_b = _bootstrap_strengths(b, n_boot, seed, prior)
    taus = np.array([kendall_tau(x, y) for x, y in zip(boot_a, boot_b)])
    tail = (1 - level) / 2
    low, high = np.quantile(taus, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), float(taus.std(ddof=1)), level)
