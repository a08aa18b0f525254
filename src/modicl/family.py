"""The task family in one place: the labelling rule z = w·x mod p, the token layout, the enumerations.

A task is a vector w ∈ Z_p^n_var and an example is an input x ∈ Z_p^n_var with its label z = w·x mod p
(PAPER.md §1.1: n_var = 2, z = a·x + b·y; the official code's ``n_var`` option allows more inputs per
example). An example is written as n_var + 1 tokens x_1 … x_n_var z, a sequence as n_ctx examples of
one task back to back, with no separator (§1.2–1.3). The model reads all but the last token and each
label z_j is predicted from the logits at the token just before it, the last input of example j; only
those predictions are scored. Tasks and inputs alike are the p**n_var vectors of Z_p^n_var, numbered
lexicographically (index i ↔ the base-p digits of i, most significant first), so the o.o.d. tasks are
the complement of the pre-training tasks in that numbering (§1.6) and the α split of the inputs is one
seeded permutation of it (§1.5).

Every other module reads the layout, the rule and the counts from here, so a new task family (another
n_var, another rule) is a change of this module. It imports nothing else of modicl and no torch: the
functions take NumPy arrays and torch tensors alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The numbers of inputs per example modicl runs: 2 is the paper's; 3 (tasks and inputs in Z_p³, examples
# x1 x2 x3 z) runs under the random task rule only, since the rectangular rule draws rectangles in Z_p².
N_VARS = (2, 3)


def check(p: int, n_var: int, rule: str) -> str | None:
    """Why a family with modulus ``p``, ``n_var`` inputs per example and pre-training task ``rule``
    cannot run, as one line naming what to change; None when it can. ``p`` is checked elsewhere."""
    if n_var not in N_VARS:
        return f"task.n_var = {n_var} is not supported; use {' or '.join(map(str, N_VARS))} (inputs per example)"
    if rule == "rectangular" and n_var != 2:
        return (
            f"task.rule = 'rectangular' builds rectangles in Z_p² and needs task.n_var = 2; "
            f"use --task.rule random with task.n_var = {n_var}"
        )
    return None


def space(n_var: int) -> str:
    """The vector space's name for messages: ``p²``, ``p³``, …, ``p^12``."""
    return "p" + ("".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(c)] for c in str(n_var)) if n_var < 10 else f"^{n_var}")


# ------------------------------------------------------------------------------------------ token layout


def example_width(n_var: int) -> int:
    """Tokens per example: the n_var inputs and the label."""
    return n_var + 1


def sequence_length(n_ctx: int, n_var: int) -> int:
    """Tokens of a full sequence of ``n_ctx`` examples, labels included: (n_var + 1)·n_ctx."""
    return example_width(n_var) * n_ctx


def input_length(n_ctx: int, n_var: int) -> int:
    """Tokens the model reads of a sequence of ``n_ctx`` examples: all but the last, (n_var + 1)·n_ctx − 1."""
    return sequence_length(n_ctx, n_var) - 1


def label_slice(n_var: int) -> slice:
    """Positions of the labels z_j in a sequence: n_var, 2·n_var + 1, … (every (n_var + 1)-th token)."""
    return slice(n_var, None, example_width(n_var))


def query_slice(n_var: int) -> slice:
    """Positions whose logits predict the labels: the last input of every example, n_var − 1, 2·n_var, …"""
    return slice(n_var - 1, None, example_width(n_var))


def example_positions(k: int, n_var: int) -> list[int]:
    """Positions of the tokens x_1 … x_n_var z of example k (0-based) in a sequence."""
    w = example_width(n_var)
    return list(range(w * k, w * (k + 1)))


def examples(tokens: Any, n_var: int) -> tuple[Any, Any]:
    """Split full sequences [..., (n_var + 1)·n_ctx] into inputs [..., n_ctx, n_var] and labels
    [..., n_ctx] (views where the input allows)."""
    ex = tokens.reshape(*tokens.shape[:-1], -1, example_width(n_var))
    return ex[..., :n_var], ex[..., n_var]


def task_labels(inputs: Any, tasks: Any, p: int) -> Any:
    """The labelling rule z = w·x mod p (PAPER.md §1.1), for integer arrays or tensors alike.

    Args:
        inputs: inputs x, shape [..., n_var].
        tasks: task vectors w, shape [..., n_var], broadcastable against ``inputs``.
        p: the modulus.
    Returns:
        z, the broadcast shape without the last axis, the type of the inputs.
    """
    return (inputs * tasks).sum(-1) % p


# ------------------------------------------------------------------------------------------ enumerations


def n_vectors(p: int, n_var: int) -> int:
    """The number of tasks, and of inputs: |Z_p^n_var| = p**n_var."""
    return int(p**n_var)


def vectors(index: np.ndarray, p: int, n_var: int) -> np.ndarray:
    """The vectors of Z_p^n_var with the given lexicographic indices: int64 [..., n_var], the base-p
    digits of each index, most significant first (n_var = 2: (i // p, i % p))."""
    index = np.asarray(index)
    digits = [(index // p ** (n_var - 1 - i)) % p for i in range(n_var)]
    return np.stack(digits, axis=-1).astype(np.int64)


def index_of(vecs: np.ndarray, p: int) -> np.ndarray:
    """Inverse of :func:`vectors`: int64 [...] indices of vectors [..., n_var]."""
    vecs = np.asarray(vecs, dtype=np.int64)
    weights = p ** np.arange(vecs.shape[-1] - 1, -1, -1, dtype=np.int64)
    out: np.ndarray = (vecs * weights).sum(-1)
    return out


def all_vectors(p: int, n_var: int) -> np.ndarray:
    """Every vector of Z_p^n_var in lexicographic order: int64 [p**n_var, n_var]."""
    return vectors(np.arange(n_vectors(p, n_var)), p, n_var)


def complement(tasks: np.ndarray, p: int, n_var: int) -> np.ndarray:
    """The task vectors of Z_p^n_var not in ``tasks`` (int64 [n, n_var]), in lexicographic order:
    int64 [p**n_var − |set(tasks)|, n_var], the pool of the o.o.d. tasks (PAPER.md §1.6)."""
    seen = np.zeros(n_vectors(p, n_var), dtype=bool)
    seen[index_of(np.asarray(tasks).reshape(-1, n_var), p)] = True
    return all_vectors(p, n_var)[~seen]


def input_split(p: int, alpha: float, split_seed: int, *, n_var: int) -> tuple[np.ndarray, np.ndarray]:
    """One seeded permutation of the p**n_var inputs → (train, test), train size round(p**n_var·α)
    (PAPER.md §1.5); the same split serves every task.

    Python's round is used as in the official code (p = 29, n_var = 2: 168, 252, 336, 420, 505, 589, 673
    for α = 0.2 … 0.8).

    Returns:
        train_inputs int64 [round(p**n_var·α), n_var], test_inputs int64 [the rest, n_var].
    """
    n = n_vectors(p, n_var)
    perm = np.random.default_rng(split_seed).permutation(n)
    n_train = round(n * alpha)
    inputs = vectors(perm, p, n_var)
    return inputs[:n_train], inputs[n_train:]
