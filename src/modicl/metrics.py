"""Accuracy on the evaluation sets, per position (k-shot), with intervals, null models and the fingerprint.

The sets cross pre-training (i.d.) or held-out (o.o.d.) task vectors with training or held-out input
pairs (PAPER.md §1.7); a fifth set, ``ood_val`` (validation o.o.d. tasks × held-out inputs), exists only
to select the early-stopping checkpoint, so that no test number is chosen on test data. For each set
we report the all-position accuracy (every z of every sequence, 0-shot to (n_ctx−1)-shot), the
last-position accuracy (the (n_ctx−1)-shot prediction), the accuracy at every position k (the k-shot
curve, Fig. 1c) and the cross-entropy on z tokens (PAPER.md §1.9).

Evaluation draws the (x, y) inputs of every sequence independently (training may share one stream
across tasks, as the official code does; evaluating that way leaves a set with only a handful of
distinct queries). A query whose (x, y) already occurs earlier in the same sequence can be answered
by copying its z from the context, so every accuracy also comes as **novel-query accuracy**: over the
queries whose (x, y) does not occur earlier in the sequence. On the same sequences we score three
null models: *copy* (answers exactly the repeated queries), *ratio matching* (answers a query on the
line through the origin of some earlier input, PAPER.md §4.1) and *modular regression* (answers every
query once two earlier inputs are independent, §4.2). The data are noise-free, so each of them is right
exactly where it applies; :mod:`modicl.algorithms` holds the predictors themselves.

The **algorithm fingerprint** splits the novel queries by which reference algorithm can answer them:
ratio-matching-solvable (``rm``), solvable only by modular regression (``mr_only``) and solvable by
neither from the context (``neither``; only task recall, i.e. memorization, answers those). The model's
accuracy on each class, with counts and intervals, says which algorithm it runs (:func:`modicl.phases.read_algorithm`):
the paper's depth-2 models answer the ``rm`` class and stay at chance on ``mr_only`` (§4.1, §4.3). Since
each reference algorithm is right exactly where it applies, ratio matching's own novel-query accuracy is
the ``rm`` class's share: the ceiling a ratio matcher cannot pass on that set.

Counts are int64 and losses fp64 whatever the autocast dtype. Every accuracy carries a 95 % Wilson
interval; for all-position accuracies, whose predictions within a sequence are correlated, the
interval uses the effective count of a clustered sample (Kish 1965). :mod:`modicl.phases` reads these
results: the phase (PAPER.md Table 1), the algorithm a set reads as, and the printed tables.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from .algorithms import proportional, span_scan
from .data import model_inputs, sample_sequences, z_targets
from .family import examples, query_slice

SETS = ("id_train", "id_test", "ood_train", "ood_test")
VAL_SET = "ood_val"
SET_LABELS = {
    "id_train": "i.d. train",
    "id_test": "i.d. test",
    "ood_train": "o.o.d. train",
    "ood_test": "o.o.d. test",
    VAL_SET: "o.o.d. val",
}
BASELINES = ("copy", "ratio_matching", "modular_regression")
BASELINE_LABELS = {"copy": "copy", "ratio_matching": "ratio matching", "modular_regression": "modular regression"}
# The accuracy that labels phases and selects checkpoints: last position, novel queries only.
PHASE_KEY = "acc_last_novel"
# The fingerprint's classes of novel queries: which reference algorithm can answer them (module docstring).
FINGERPRINT = ("rm", "mr_only", "neither")
FINGERPRINT_LABELS = {"rm": "RM-solvable", "mr_only": "MR-only", "neither": "neither"}


def wilson_interval(k: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k/n (Wilson 1927); 95 % by default.

    ``k`` and ``n`` may be non-integer effective counts. Returns (0, 1) when n = 0 (no information).
    """
    if n <= 0:
        return 0.0, 1.0
    ph = k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def clustered_interval(
    sy: float, syy: float, sym: float, sm: float, smm: float, n_clusters: int
) -> tuple[float, float]:
    """95 % interval of a ratio Σy/Σm over clusters (sequences) whose predictions are correlated.

    Args are the sums over clusters of y (hits), y², y·m, m (predictions) and m². The ratio estimator's
    variance n/(n−1)·Σ(y − r·m)²/(Σm)² gives an effective count r(1−r)/var (capped at Σm: a cluster
    never counts as more than its predictions), then :func:`wilson_interval` of that count (Kish 1965).
    """
    if sm <= 0:
        return 0.0, 1.0
    r = sy / sm
    if n_clusters < 2 or r in (0.0, 1.0):
        return wilson_interval(sy, sm)
    var = n_clusters / (n_clusters - 1) * max(syy - 2 * r * sym + r * r * smm, 0.0) / (sm * sm)
    n_eff = sm if var <= 0 else min(sm, r * (1 - r) / var)
    return wilson_interval(r * n_eff, n_eff)


def query_structure(tokens: Int[Tensor, "batch seq"], p: int, *, n_var: int) -> dict[str, Bool[Tensor, "batch n_ctx"]]:
    """Which queries of each sequence are repeated, and where each null model answers correctly.

    Args:
        tokens: int64 [B, (n_var + 1)·n_ctx] sequences x1 y1 z1 … of noise-free tasks.
        p: the prime modulus.
        n_var: inputs per example (:mod:`modicl.family`).
    Returns:
        bool tensors [B, n_ctx]: ``novel`` (the k-th input does not occur among inputs 0…k−1), and for
        each of :data:`BASELINES` whether that predictor, given examples 0…k−1, answers query k
        correctly (copy: a repeat; ratio matching: the query is 0 or lies on the line through the
        origin of an earlier non-zero input; modular regression: the query lies in the span of the
        earlier inputs, which for n_var = 2 is every query once two earlier inputs are linearly
        independent over Z_p, or where ratio matching applies).
    """
    x, _ = examples(tokens, n_var)  # [B, n, n_var]
    n = x.shape[1]
    before = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)  # [k, j]: j < k
    repeated = ((x[:, :, None] == x[:, None, :]).all(-1) & before).any(-1)
    nonzero = (x != 0).any(-1)
    on_line = proportional(x[:, :, None], x[:, None, :], p) & nonzero[:, None, :] & before
    rm = on_line.any(-1) | ~nonzero
    in_span, _, _, _ = span_scan(x, torch.zeros_like(x[..., 0]), p)
    return {"novel": ~repeated, "copy": repeated, "ratio_matching": rm, "modular_regression": in_span}


class Counts:
    """Running int64 / fp64 sums for one set: hits per position k of the model and of the null models,
    split into all and novel queries, and per-sequence sums for clustered intervals."""

    def __init__(self, n_ctx: int, device: torch.device):
        z = lambda *s, dt=torch.int64: torch.zeros(*s, dtype=dt, device=device)  # noqa: E731
        self.n_ctx = n_ctx
        self.hits = z(1 + len(BASELINES), n_ctx)  # [predictor, k]; row 0 is the model
        self.novel_hits = z(1 + len(BASELINES), n_ctx)
        self.novel = z(n_ctx)
        self.loss_sum = z(n_ctx, dt=torch.float64)
        self.novel_loss_sum = z((), dt=torch.float64)
        # per-sequence sums over the model's hits y and novel counts m: Σy², and Σy_n², Σy_n·m, Σm² (novel)
        self.seq = z(4)
        # the fingerprint: novel queries per class of :data:`FINGERPRINT` and the model's hits on them, per k
        self.fp_n = z(len(FINGERPRINT), n_ctx)
        self.fp_hits = z(len(FINGERPRINT), n_ctx)
        self.n = 0

    @property
    def correct(self) -> Tensor:
        """int64 [n_ctx]: the model's correct predictions per position."""
        return self.hits[0]

    def add(
        self,
        logits: Float[Tensor, "batch n_ctx vocab"],
        targets: Int[Tensor, "batch n_ctx"],
        structure: Mapping[str, Bool[Tensor, "batch n_ctx"]] | None = None,
    ) -> None:
        """logits [B, n_ctx, V] at the positions that predict z, targets int64 [B, n_ctx], and the sequences'
        :func:`query_structure` (None: every query counts as novel and the null models are not scored)."""
        hit = logits.argmax(-1) == targets
        if structure is None:
            novel = torch.ones_like(hit)
            base = [torch.zeros_like(hit)] * len(BASELINES)
        else:
            novel, base = structure["novel"], [structure[b] for b in BASELINES]
        all_hits = torch.stack([hit, *base])  # [1 + baselines, B, n_ctx]
        self.hits += all_hits.sum(1, dtype=torch.int64)
        self.novel_hits += (all_hits & novel).sum(1, dtype=torch.int64)
        self.novel += novel.sum(0, dtype=torch.int64)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # [B, n_ctx]
        self.loss_sum += loss.sum(0, dtype=torch.float64)
        self.novel_loss_sum += (loss * novel).sum(dtype=torch.float64)
        y, yn, m = hit.sum(1), (hit & novel).sum(1), novel.sum(1)
        self.seq += torch.stack([(y * y).sum(), (yn * yn).sum(), (yn * m).sum(), (m * m).sum()])
        if structure is not None:
            rm, mr = structure["ratio_matching"], structure["modular_regression"]
            classes = torch.stack([rm, mr & ~rm, ~(mr | rm)]) & novel  # [class, B, n_ctx]
            self.fp_n += classes.sum(1, dtype=torch.int64)
            self.fp_hits += (classes & hit).sum(1, dtype=torch.int64)
        self.n += targets.shape[0]

    def result(self) -> dict:
        """The set's numbers as Python values (see :func:`evaluate` for the keys)."""
        hits, novel_hits, novel = self.hits.cpu(), self.novel_hits.cpu(), self.novel.cpu()
        syy, synyn, synm, smm = self.seq.cpu().tolist()
        n, n_ctx = self.n, self.n_ctx
        n_pred, n_novel, n_novel_last = n * n_ctx, int(novel.sum()), int(novel[-1])
        y, y_last = int(hits[0].sum()), int(hits[0, -1])
        yn, yn_last = int(novel_hits[0].sum()), int(novel_hits[0, -1])
        frac = lambda a, b: a / b if b else None  # noqa: E731
        loss = self.loss_sum.cpu()
        out = {
            "acc": y / n_pred,
            "acc_ci": list(clustered_interval(y, syy, y * n_ctx, n_pred, n * n_ctx * n_ctx, n)),
            "acc_last": y_last / n,
            "acc_last_ci": list(wilson_interval(y_last, n)),
            "acc_novel": frac(yn, n_novel),
            "acc_novel_ci": list(clustered_interval(yn, synyn, synm, n_novel, smm, n)),
            "acc_last_novel": frac(yn_last, n_novel_last),
            "acc_last_novel_ci": list(wilson_interval(yn_last, n_novel_last)),
            "loss": loss.sum().item() / n_pred,
            "loss_novel": frac(self.novel_loss_sum.item(), n_novel),
            "kshot": (hits[0].double() / n).tolist(),
            "kshot_novel": [frac(int(a), int(b)) for a, b in zip(novel_hits[0], novel)],
            "n_sequences": n,
            "n_novel": n_novel,
            "n_novel_last": n_novel_last,
            "repeat_frac": 1 - n_novel / n_pred,
            "repeat_frac_last": 1 - n_novel_last / n,
            "baselines": {
                b: {
                    "acc": int(hits[i].sum()) / n_pred,
                    "acc_last": int(hits[i, -1]) / n,
                    "acc_last_ci": list(wilson_interval(int(hits[i, -1]), n)),
                    "acc_last_novel": frac(int(novel_hits[i, -1]), n_novel_last),
                    "kshot": (hits[i].double() / n).tolist(),
                }
                for i, b in enumerate(BASELINES, start=1)
            },
        }
        if int(self.fp_n.sum()):  # scored with the query structure: the fingerprint, last position and per k
            fp_n, fp_hits = self.fp_n.cpu().tolist(), self.fp_hits.cpu().tolist()
            out["fingerprint"] = {
                c: {
                    "acc": frac(fp_hits[i][-1], fp_n[i][-1]),
                    "acc_ci": list(wilson_interval(fp_hits[i][-1], fp_n[i][-1])),
                    "n": fp_n[i][-1],
                    "share": frac(fp_n[i][-1], n_novel_last),
                }
                for i, c in enumerate(FINGERPRINT)
            }
            out["fingerprint_kshot"] = {
                c: {"acc": [frac(h, k) for h, k in zip(fp_hits[i], fp_n[i])], "n": fp_n[i]}
                for i, c in enumerate(FINGERPRINT)
            }
        return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    sets: Mapping[str, tuple[Int[Tensor, "_ n_var"], Int[Tensor, "_ n_var"]]],
    *,
    n_ctx: int,
    p: int,
    sequences: int,
    batch_size: int,
    generator: torch.Generator,
    autocast: contextlib.AbstractContextManager | None = None,
    replacement: bool = True,
) -> dict[str, dict]:
    """Evaluate ``model`` on each named set, on sequences whose inputs are drawn independently.

    Args:
        model: maps int64 tokens [B, T] to logits [B, T, p].
        sets: {name: (tasks int64 [n_tasks, n_var], inputs int64 [n_inputs, n_var])}, on the model's
            device; a set with no task is left out of the result. n_var (:mod:`modicl.family`) is the
            width of the vectors.
        n_ctx, p: sequence length in examples; modulus.
        sequences: sequences per set, spread evenly over its tasks (rounded up to ≥ 1 per task, so
            ``n_sequences`` in the result may exceed it).
        batch_size: sequences per forward pass.
        generator: torch.Generator on the device; determines every evaluation sequence.
        autocast: context for the forward pass (e.g. bf16 autocast); counts stay exact.
        replacement: as in :func:`modicl.data.sample_sequences` (False: without replacement where
            the pool allows it). Inputs are never shared across tasks here.

    Returns:
        {name: result}, each result holding ``acc``, ``acc_last``, ``acc_novel``, ``acc_last_novel``
        (None when there is no novel query) with ``*_ci`` 95 % intervals [lo, hi]; ``loss`` and
        ``loss_novel`` (nats); ``kshot`` and ``kshot_novel`` (per position k, the k-shot curve);
        ``n_sequences``, ``n_novel`` (all positions), ``n_novel_last``; ``repeat_frac`` and
        ``repeat_frac_last`` (fraction of queries that repeat an earlier input); ``baselines``:
        {copy, ratio_matching, modular_regression: {acc, acc_last, acc_last_ci, acc_last_novel, kshot}};
        ``fingerprint``: {rm, mr_only, neither: {acc (None without queries), acc_ci, n, share}}, the novel
        last-position queries split by which reference algorithm can answer them (share: of all novel
        last-position queries), and ``fingerprint_kshot``: {class: {acc: [n_ctx], n: [n_ctx]}} per k.
    """
    was_training = model.training
    model.eval()
    out = {}
    for name, (tasks, pairs) in sets.items():
        if tasks.shape[0] == 0:
            continue
        per_task = max(1, math.ceil(sequences / tasks.shape[0]))
        tokens = sample_sequences(
            tasks, pairs, per_task, n_ctx, p, generator, shared_inputs=False, replacement=replacement
        )
        n_var = tasks.shape[-1]
        counts = Counts(n_ctx, tokens.device)
        for chunk in tokens.split(batch_size):
            with autocast or contextlib.nullcontext():
                logits = model(model_inputs(chunk), positions=query_slice(n_var))
            counts.add(logits, z_targets(chunk, n_var=n_var), query_structure(chunk, p, n_var=n_var))
        out[name] = counts.result()
    model.train(was_training)
    return out
