"""Preference models: from pairwise comparisons to strengths, and where that fails.

The chapter "What Are Preferences?" derives the models; this module keeps
them, small enough to read top to bottom.

1. **Comparisons.** A comparison is a pair ``(winner, loser)`` of item indices
   ``0 .. n_items - 1``; a data set is a list of them (or an integer array of
   shape ``(m, 2)``). :func:`win_matrix` counts them: ``W[i, j]`` is how often
   ``i`` beat ``j``. The order of the list is kept because Elo needs it.
2. **Bradley–Terry.** Item ``i`` has a log-strength ``theta[i]`` and beats
   ``j`` with probability ``sigmoid(theta[i] - theta[j])``.
   :func:`bradley_terry_log_likelihood` scores strengths on data;
   :func:`fit_bradley_terry` finds the maximum-likelihood strengths with the
   MM algorithm (Zermelo 1929; Hunter 2004), centred to mean zero because a
   common shift changes no probability.
3. **Elo.** :func:`elo_ratings` processes the comparisons one at a time, as a
   chess federation does. Its expected score is Bradley–Terry's probability on
   another scale (400 / ln 10 rating points per unit of log-strength), and each
   update is one stochastic-gradient step on one comparison, so the result
   depends on the order of the games; the Bradley–Terry fit does not.
4. **The toy world.** :func:`distinct_responses` and :func:`toy_comparisons`
   make comparisons among a handful of responses to one prompt, labelled by the
   toy world's simulated annotators; :func:`condorcet_example` builds three
   annotators whose majority vote is a cycle that no scalar reward can fit, and
   :func:`best_ordering_accuracy` measures how much of it any ranking explains.

    >>> comparisons = [(0, 1), (0, 1), (1, 0), (1, 2), (2, 1), (0, 2)]
    >>> theta = fit_bradley_terry(comparisons, n_items=3)
    >>> [round(float(t), 3) for t in theta]
    [0.804, -0.202, -0.602]
    >>> round(bradley_terry_log_likelihood(theta, comparisons), 3)
    -3.586
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from typing import Sequence

import numpy as np

from rlhf_course.toyworld import Annotator, Prompt, gold_reward, make_prompts, sample_response

Comparisons = Sequence[tuple[int, int]] | np.ndarray

#: Elo's rating points per unit of Bradley–Terry log-strength: ratings use base 10
#: and a scale of 400, so ``10 ** (d / 400) = exp(d * ln(10) / 400)``.
ELO_SCALE = 400.0


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------


def as_comparisons(comparisons: Comparisons, n_items: int) -> np.ndarray:
    """The comparisons as an integer array of shape ``(m, 2)``, checked.

    Raises ``ValueError`` naming the first bad comparison: not a pair, not an
    integer index, an index outside ``0 .. n_items - 1``, or an item compared
    with itself (which says nothing about preferences).
    """
    if not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items must be a positive integer; got {n_items!r}.")
    array = np.asarray(comparisons)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            f"comparisons must be (winner, loser) pairs, i.e. shape (m, 2); got shape {array.shape}. "
            "Write them as a list of tuples such as [(0, 1), (2, 0)]."
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"comparisons must hold integer item indices; got {array.dtype} values.")
        array = array.astype(np.int64)
    bad = np.flatnonzero((array < 0).any(axis=1) | (array >= n_items).any(axis=1))
    if bad.size:
        raise ValueError(
            f"comparison {bad[0]} is {tuple(array[bad[0]].tolist())}: indices must lie in 0..{n_items - 1} "
            f"(there are {n_items} items)."
        )
    same = np.flatnonzero(array[:, 0] == array[:, 1])
    if same.size:
        raise ValueError(
            f"comparison {same[0]} compares item {array[same[0], 0]} with itself; a comparison needs two items."
        )
    return array.astype(np.int64)


def win_matrix(comparisons: Comparisons, n_items: int) -> np.ndarray:
    """``W[i, j]``: how many times item ``i`` beat item ``j``.

    The win matrix is all the Bradley–Terry likelihood needs (a sufficient
    statistic), which is why the fit cannot depend on the order of the data.
    """
    array = as_comparisons(comparisons, n_items)
    wins = np.zeros((n_items, n_items), dtype=np.int64)
    np.add.at(wins, (array[:, 0], array[:, 1]), 1)
    return wins


def _as_strengths(strengths: Sequence[float] | np.ndarray) -> np.ndarray:
    theta = np.asarray(strengths, dtype=np.float64)
    if theta.ndim != 1 or theta.size == 0:
        raise ValueError(f"strengths must be a non-empty 1-D array, one per item; got shape {theta.shape}.")
    if not np.all(np.isfinite(theta)):
        raise ValueError("strengths must be finite numbers; got NaN or infinity.")
    return theta


# ---------------------------------------------------------------------------
# Bradley–Terry
# ---------------------------------------------------------------------------


def log_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """``log(sigmoid(x))`` without overflow: ``-log(1 + exp(-x))``, computed stably.

    ``np.log(1 / (1 + np.exp(-x)))`` gives ``-inf`` once ``exp(-x)`` overflows
    (``x`` below about -710); ``logaddexp`` never does.
    """
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def bradley_terry_probability(theta_i: np.ndarray | float, theta_j: np.ndarray | float) -> np.ndarray:
    """Probability that an item of log-strength ``theta_i`` beats one of ``theta_j``."""
    return np.exp(log_sigmoid(np.asarray(theta_i) - np.asarray(theta_j)))


def bradley_terry_log_likelihood(strengths: Sequence[float] | np.ndarray, comparisons: Comparisons) -> float:
    """Log-likelihood of the comparisons under Bradley–Terry: ``sum log sigmoid(theta_w - theta_l)``.

    Args:
        strengths: one log-strength per item; item ``i`` beats ``j`` with
            probability ``sigmoid(theta_i - theta_j) = e^theta_i / (e^theta_i + e^theta_j)``.
        comparisons: ``(winner, loser)`` index pairs.

    Returns:
        The *sum* over comparisons (not the mean): the log-probability of the
        whole data set, whose maximiser is the maximum-likelihood fit. It is
        never positive, and 0 for no comparisons. Divide by the number of
        comparisons for the per-comparison value that a loss reports.
    """
    theta = _as_strengths(strengths)
    array = as_comparisons(comparisons, len(theta))
    return float(log_sigmoid(theta[array[:, 0]] - theta[array[:, 1]]).sum())


def _reaches_all(adjacency: np.ndarray) -> bool:
    """True when every node can be reached from node 0 along the directed edges."""
    seen, frontier = {0}, [0]
    while frontier:
        node = frontier.pop()
        for nxt in np.flatnonzero(adjacency[node]):
            if int(nxt) not in seen:
                seen.add(int(nxt))
                frontier.append(int(nxt))
    return len(seen) == len(adjacency)


def mle_exists(wins: np.ndarray) -> bool:
    """Ford's condition: the Bradley–Terry maximum-likelihood estimate is finite.

    It is when the "beat" graph (an edge ``i -> j`` when ``i`` beat ``j`` at
    least once) is strongly connected: for every split of the items into two
    groups, someone in each group beat someone in the other. Otherwise the
    likelihood keeps growing as one group's strengths go to infinity.
    """
    beats = np.asarray(wins) > 0
    return _reaches_all(beats) and _reaches_all(beats.T)


def fit_bradley_terry(
    comparisons: Comparisons,
    n_items: int,
    prior: float = 0.0,
    tol: float = 1e-10,
    max_iter: int = 20_000,
) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry log-strengths, centred to mean zero.

    Uses the MM (minorise–maximise) algorithm: with ``pi = exp(theta)``,
    ``W_i`` the wins of item ``i`` and ``N_ij`` the comparisons between ``i``
    and ``j``, repeat

        pi_i <- W_i / sum_j N_ij / (pi_i + pi_j)

    Each step increases the likelihood, and it converges to the unique
    maximum whenever that exists (Hunter 2004). Only the win counts enter, so
    the comparisons can come in any order.

    Args:
        comparisons: ``(winner, loser)`` index pairs.
        n_items: number of items; an item never compared gets strength 0
            only if ``prior > 0`` (otherwise the data say nothing about it).
        prior: pseudo-count: every pair of items gets ``prior`` extra virtual
            wins each way. This pulls the strengths together (a Bayesian prior
            in disguise) and keeps them finite when an item wins or loses all
            of its comparisons. 0 is plain maximum likelihood.
        tol: stop when no centred log-strength moves by more than this.
        max_iter: give up (with a warning) after this many steps.

    Raises:
        ValueError: on malformed comparisons, a negative prior, or, with
            ``prior == 0``, data for which the maximum-likelihood estimate is
            infinite (see :func:`mle_exists`).
    """
    if prior < 0 or not math.isfinite(prior):
        raise ValueError(f"prior must be a finite number >= 0; got {prior}.")
    wins = win_matrix(comparisons, n_items).astype(np.float64)
    if n_items == 1:
        return np.zeros(1)
    if prior > 0:
        wins = wins + prior * (1.0 - np.eye(n_items))
    elif not mle_exists(wins):
        never_lost = [i for i in range(n_items) if wins[:, i].sum() == 0]
        never_won = [i for i in range(n_items) if wins[i].sum() == 0]
        detail = (f"item {never_lost[0]} never lost" if never_lost else
                  f"item {never_won[0]} never won" if never_won else
                  "some group of items never lost to the others")
        raise ValueError(
            f"the maximum-likelihood strengths are infinite: {detail}, so making it stronger (or weaker) "
            "always raises the likelihood. Collect more comparisons, or pass prior > 0 (e.g. prior=0.5) "
            "to add virtual wins and losses between every pair."
        )
    total_wins = wins.sum(axis=1)
    games = wins + wins.T
    theta = np.zeros(n_items)
    for _ in range(max_iter):
        pi = np.exp(theta)
        denominator = (games / (pi[:, None] + pi[None, :])).sum(axis=1)
        new = np.log(total_wins / denominator)
        new -= new.mean()
        if np.max(np.abs(new - theta)) < tol:
            return new
        theta = new
    warnings.warn(f"fit_bradley_terry did not converge to tol={tol} in {max_iter} steps.", RuntimeWarning,
                  stacklevel=2)
    return theta


# ---------------------------------------------------------------------------
# Elo
# ---------------------------------------------------------------------------


def elo_ratings(
    comparisons: Comparisons,
    n_items: int,
    k: float = 32.0,
    initial: float = 1500.0,
) -> np.ndarray:
    """Elo ratings after processing the comparisons in the order given.

    Before each game the winner's expected score is
    ``E = 1 / (1 + 10 ** ((R_loser - R_winner) / 400))``; the winner gains
    ``k * (1 - E)`` and the loser loses the same. With ``theta = R * ln(10) / 400``,
    ``E`` is the Bradley–Terry probability and the update is a gradient step of
    size ``k`` on that one comparison's log-likelihood. A constant step never
    settles: the last games always move the ratings most, so reordering the
    same games changes the result (by more for larger ``k``). The updates are
    zero-sum, so the mean rating stays at ``initial``.
    """
    if k <= 0 or not math.isfinite(k):
        raise ValueError(f"k must be a positive number; got {k}.")
    array = as_comparisons(comparisons, n_items)
    ratings = np.full(n_items, float(initial))
    for winner, loser in array:
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[loser] - ratings[winner]) / ELO_SCALE))
        ratings[winner] += k * (1.0 - expected)
        ratings[loser] -= k * (1.0 - expected)
    return ratings


def elo_to_log_strength(ratings: Sequence[float] | np.ndarray) -> np.ndarray:
    """Elo ratings as centred Bradley–Terry log-strengths (divide by 400 / ln 10 ≈ 173.7)."""
    ratings = np.asarray(ratings, dtype=np.float64)
    return (ratings - ratings.mean()) * math.log(10.0) / ELO_SCALE


def log_strength_to_elo(theta: Sequence[float] | np.ndarray, mean: float = 1500.0) -> np.ndarray:
    """Bradley–Terry log-strengths on the Elo scale, with the given mean rating."""
    theta = np.asarray(theta, dtype=np.float64)
    return mean + (theta - theta.mean()) * ELO_SCALE / math.log(10.0)


# ---------------------------------------------------------------------------
# Rankings
# ---------------------------------------------------------------------------


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's rank correlation (tau-b) between two score vectors.

    Over all pairs of items: (pairs ordered the same way − pairs ordered
    oppositely), divided so that ties in either vector do not count against
    it. 1 means the same ranking, -1 the reverse; ``(1 + tau) / 2`` is the share
    of untied pairs that the two scores order alike.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"kendall_tau needs two 1-D vectors of the same length >= 2; got {x.shape} and {y.shape}.")
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    denominator = math.sqrt(float((sx**2).sum()) * float((sy**2).sum()))
    if denominator == 0:
        raise ValueError("kendall_tau is undefined when one of the vectors is constant.")
    return float((sx * sy).sum() / denominator)


def best_ordering_accuracy(preferences: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """The most pairwise verdicts that any ranking of the items agrees with.

    ``preferences[i, j]`` is the share of comparisons between ``i`` and ``j``
    that ``i`` won (so ``preferences[j, i] = 1 - preferences[i, j]``). A pair
    with a verdict (share not 1/2) is explained by a ranking when the ranking
    puts the majority's winner first. Every scalar reward induces a ranking,
    so no reward can beat this number; a cycle keeps it below 1. Tries every
    permutation, so keep to about 8 items.

    Returns:
        ``(accuracy, ranking)``: the share of decided pairs explained, and one
        best ranking (item indices, best first).
    """
    p = np.asarray(preferences, dtype=np.float64)
    n = len(p)
    if p.shape != (n, n) or n > 9:
        raise ValueError(f"preferences must be a square matrix of at most 9 items; got shape {p.shape}.")
    decided = [(i, j) for i in range(n) for j in range(i + 1, n) if p[i, j] != 0.5]
    if not decided:
        raise ValueError("no pair has a majority; every ranking fits equally well.")
    best, best_order = -1, tuple(range(n))
    for order in itertools.permutations(range(n)):
        position = {item: rank for rank, item in enumerate(order)}
        agree = sum((position[i] < position[j]) == (p[i, j] > 0.5) for i, j in decided)
        if agree > best:
            best, best_order = agree, order
    return best / len(decided), best_order


def preference_shares(comparisons: Comparisons, n_items: int) -> np.ndarray:
    """``P[i, j]``: the share of comparisons between ``i`` and ``j`` that ``i`` won (1/2 if none)."""
    wins = win_matrix(comparisons, n_items).astype(np.float64)
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(games > 0, wins / games, 0.5)
    np.fill_diagonal(shares, 0.5)
    return shares


# ---------------------------------------------------------------------------
# The toy world
# ---------------------------------------------------------------------------


def distinct_responses(
    prompt: Prompt, n: int, seed: int = 0, min_gap: float = 0.0, max_draws: int = 5000
) -> list[str]:
    """``n`` sampled responses to ``prompt`` whose gold rewards differ by more than ``min_gap``, best first.

    Different gold rewards make the gold ranking strict, so a rank
    correlation with it is well defined; a gap keeps out near-ties (one extra
    word costs only 0.04), which no annotator could tell apart reliably.
    A sampled response is kept when its gold reward is far enough from those
    of the responses kept so far.

    Raises:
        ValueError: if ``max_draws`` samples do not give ``n`` such responses.
    """
    rng = random.Random(f"distinct/{seed}/{prompt.id}")
    by_gold: dict[float, str] = {}
    for _ in range(max_draws):
        response = sample_response(prompt, rng)
        gold = gold_reward(prompt, response)
        if all(abs(gold - g) > max(min_gap, 1e-9) for g in by_gold):
            by_gold[gold] = response
            if len(by_gold) == n:
                return [by_gold[g] for g in sorted(by_gold, reverse=True)]
    raise ValueError(f"only {len(by_gold)} responses with gold rewards more than {min_gap} apart in "
                     f"{max_draws} samples for {prompt.id!r}; ask for fewer than {n}, a smaller gap or another prompt.")


def toy_comparisons(
    prompt: Prompt,
    responses: Sequence[str],
    annotators: Sequence[Annotator],
    per_pair: int = 10,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Simulated comparisons among ``responses``: every pair is labelled ``per_pair`` times.

    Each label comes from an annotator drawn at random from ``annotators``, who
    prefers the first response with ``Annotator.prob_prefers_first``. Every
    pair gets the same number of labels (a balanced design), and the list is
    shuffled, as if the labels had arrived in random order.

    Returns:
        ``(winner, loser)`` pairs of indices into ``responses``.
    """
    if not annotators:
        raise ValueError("annotators is empty; pass at least one Annotator.")
    if per_pair < 1:
        raise ValueError(f"per_pair must be >= 1; got {per_pair}.")
    rng = random.Random(f"toy-comparisons/{seed}")
    out = []
    for i, j in itertools.combinations(range(len(responses)), 2):
        for _ in range(per_pair):
            annotator = rng.choice(annotators)
            p = annotator.prob_prefers_first(prompt, responses[i], responses[j])
            out.append((i, j) if rng.random() < p else (j, i))
    rng.shuffle(out)
    return out


def condorcet_example(temperature: float = 0.0) -> tuple[Prompt, dict[str, str], list[Annotator]]:
    """Three responses and three annotators whose majority preference is a cycle.

    The prompt asks for a sum. The responses trade three things off:

    - ``A``: right, but in a sentence ("The answer is 7.");
    - ``B``: a bare number, but wrong;
    - ``C``: wrong, in a sentence, padded with friendly words (the longest).

    The annotators weigh them differently: ``stickler`` puts correctness
    first (A > B > C, the gold order), ``skimmer`` looks at the form and
    likes detail (B > C > A), and ``chatty`` likes long answers (C > A > B).
    Each pair is won two votes to one, round a cycle: A beats B, B beats C,
    C beats A.

    Returns:
        ``(prompt, {"A": ..., "B": ..., "C": ...}, [stickler, skimmer, chatty])``.
    """
    prompt = next(p for p in make_prompts("train", 200, seed=0, families=["arithmetic"])
                  if int(p.answer) > 5)
    right, wrong = int(prompt.answer), int(prompt.answer) + 1
    responses = {
        "A": f"The answer is {right}.",
        "B": f"{wrong}",
        "C": f"Sure. The answer is {wrong + 1}. Let me know if you need more.",
    }
    annotators = [
        Annotator("stickler", weights={"correct": 3.0, "format": 1.0, "tone": 1.0, "concise": 0.5},
                  temperature=temperature),
        Annotator("skimmer", weights={"format": 2.0}, length_bias=0.1, temperature=temperature),
        Annotator("chatty", weights={"tone": 1.0}, length_bias=0.2, temperature=temperature),
    ]
    return prompt, responses, annotators
