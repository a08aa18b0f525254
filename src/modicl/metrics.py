"""Accuracy on the evaluation sets, per position (k-shot), with intervals, null models and the phase.

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
accuracy on each class, with counts and intervals, says which algorithm it runs (:func:`read_algorithm`):
the paper's depth-2 models answer the ``rm`` class and stay at chance on ``mr_only`` (§4.1, §4.3). Since
each reference algorithm is right exactly where it applies, ratio matching's own novel-query accuracy is
the ``rm`` class's share: the ceiling a ratio matcher cannot pass on that set.

Counts are int64 and losses fp64 whatever the autocast dtype. Every accuracy carries a 95 % Wilson
interval; for all-position accuracies, whose predictions within a sequence are correlated, the
interval uses the effective count of a clustered sample (Kish 1965). The phase (PAPER.md Table 1) is
read from novel-query last-position accuracies with a threshold (see :func:`classify_phase`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

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
ALGORITHMS = ("modular_regression", "recall_or_modular_regression", "ratio_matching", "neither", "undecided")
ALGORITHM_LABELS = {
    "modular_regression": "modular regression",
    "ratio_matching": "ratio matching",
    "recall_or_modular_regression": "task recall or modular regression",
    "neither": "neither",
    "undecided": "undecided",
}

# Table 1 of the paper: the ✓/✗ pattern on (i.d. train, i.d. test, o.o.d. train, o.o.d. test) → phase.
TABLE_1: dict[tuple[bool, ...], str] = {
    (True, False, False, False): "id_memorization",
    (True, True, False, False): "id_generalization",
    (True, False, True, False): "ood_memorization",
    (True, True, True, True): "ood_generalization",
    (False, False, False, False): "none",
}
PHASES = ("none", "id_memorization", "id_generalization", "ood_memorization", "ood_generalization", "unlisted")
PHASE_LABELS = {
    "none": "none (no set learned)",
    "id_memorization": "i.d. memorization",
    "id_generalization": "i.d. generalization",
    "ood_memorization": "o.o.d. memorization",
    "ood_generalization": "o.o.d. generalization",
    "unlisted": "a pattern not in Table 1",
}


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


def read_algorithm(fingerprint: Mapping[str, Mapping], threshold: float = 0.5, pretraining: bool = False) -> str:
    """Which reference algorithm a set's answers read as, from its last-position :data:`FINGERPRINT`.

    A class counts as *answered* when the 95 % interval of the model's accuracy on it lies at or above
    ``threshold`` (the phase threshold, so "answered" means what ✓ means in Table 1), and as *not
    answered* when the interval lies below it. The label:

    * ``modular_regression``: the MR-only queries are answered (only solving for w from two independent
      examples, PAPER.md §4.2, reaches those);
    * ``ratio_matching``: the RM-solvable queries are answered and the MR-only ones are not (§4.1: the
      depth-2 model's algorithm);
    * ``neither``: not even the RM-solvable queries are answered;
    * ``undecided``: an interval straddles the threshold or a class has no query (more sequences decide).

    On pre-training (i.d.) tasks a model that recalls the task from the context answers every query, so
    answered MR-only queries there read ``recall_or_modular_regression``: the fingerprint cannot tell the
    two apart on those sets.

    Args:
        fingerprint: {class: {"acc", "acc_ci": [lo, hi], "n", ...}} as in :func:`evaluate`'s results.
        threshold: the phase threshold in (0, 1].
        pretraining: the set's tasks are pre-training tasks (``id_train``, ``id_test``).
    """
    rm, mr = fingerprint["rm"], fingerprint["mr_only"]
    if mr["n"] and mr["acc_ci"][0] >= threshold:
        return "recall_or_modular_regression" if pretraining else "modular_regression"
    if rm["n"] and rm["acc_ci"][1] < threshold:
        return "neither"
    if rm["n"] and mr["n"] and rm["acc_ci"][0] >= threshold and mr["acc_ci"][1] < threshold:
        return "ratio_matching"
    return "undecided"


# The per-set numbers kept in summary.json and results tables (the k-shot curves stay in metrics.jsonl).
SUMMARY_KEYS = (
    "acc",
    "acc_ci",
    "acc_last",
    "acc_last_ci",
    "acc_last_novel",
    "acc_last_novel_ci",
    "acc_novel",
    "acc_novel_ci",
    "loss",
    "n_sequences",
    "n_novel_last",
    "repeat_frac_last",
)


def summary_of_set(result: Mapping, threshold: float = 0.5, pretraining: bool = False) -> dict:
    """The :data:`SUMMARY_KEYS` of one set's :func:`evaluate` result, each null model's last-position
    accuracy on all and on novel queries (``baselines``), the last-position ``fingerprint`` and the
    ``algorithm`` it reads as at ``threshold`` (:func:`read_algorithm`; ``pretraining`` for the i.d.
    sets); keys a result lacks are left out."""
    out = {k: result[k] for k in SUMMARY_KEYS if k in result}
    if "baselines" in result:
        out["baselines"] = {
            b: {k: v[k] for k in ("acc_last", "acc_last_ci", "acc_last_novel")} for b, v in result["baselines"].items()
        }
    if "fingerprint" in result:
        out["fingerprint"] = result["fingerprint"]
        out["algorithm"] = read_algorithm(result["fingerprint"], threshold, pretraining)
    return out


def flat_columns(prefix: str, summary_set: Mapping) -> dict:
    """One set of a summary (:func:`summary_of_set`) as flat table columns named ``prefix.KEY``:
    accuracies with ``_lo`` / ``_hi`` interval columns, counts, the repeat share, the loss, and the
    null models' last-position accuracy on all queries (``copy_last``, ``ratio_matching_last``,
    ``modular_regression_last``) and on novel queries (``…_last_novel``, the phase metric's nulls), the
    fingerprint (``fp_rm``, ``fp_mr_only``, ``fp_neither`` with ``_lo`` / ``_hi`` / ``_n``) and the
    ``algorithm`` label. Keys the summary lacks (runs from older versions) are left out."""
    out = {}
    for k, v in summary_set.items():
        if k == "fingerprint":
            for c, f in v.items():
                out[f"{prefix}.fp_{c}"], out[f"{prefix}.fp_{c}_n"] = f["acc"], f["n"]
                out[f"{prefix}.fp_{c}_lo"], out[f"{prefix}.fp_{c}_hi"] = f["acc_ci"]
        elif k == "baselines":
            out.update({f"{prefix}.{b}_last": bv["acc_last"] for b, bv in v.items()})
            out.update(
                {f"{prefix}.{b}_last_novel": bv["acc_last_novel"] for b, bv in v.items() if "acc_last_novel" in bv}
            )
        elif k.endswith("_ci"):
            out[f"{prefix}.{k[:-3]}_lo"], out[f"{prefix}.{k[:-3]}_hi"] = v
        else:
            out[f"{prefix}.{k}"] = v
    return out


def phase_pattern(metrics: Mapping[str, Any], threshold: float = 0.5, key: str = PHASE_KEY) -> tuple[bool, ...]:
    """The ✓/✗ pattern of Table 1 on (i.d. train, i.d. test, o.o.d. train, o.o.d. test): a set is
    ✓ when ``metrics[set][key] ≥ threshold``; a missing (None) accuracy counts as ✗."""
    return tuple(metrics[s].get(key) is not None and metrics[s][key] >= threshold for s in SETS)


def classify_phase(metrics: Mapping[str, Any], threshold: float = 0.5, key: str = PHASE_KEY) -> str:
    """The paper's phase of a run (PAPER.md Table 1) from its accuracies on the four sets.

    The ✓/✗ pattern (:func:`phase_pattern`) is named by Table 1 — ✓✗✗✗ i.d. memorization, ✓✓✗✗
    i.d. generalization, ✓✗✓✗ o.o.d. memorization, ✓✓✓✓ o.o.d. generalization — plus ✗✗✗✗
    ``none`` (the loss plateau); any other pattern is ``unlisted`` (:func:`pattern_text` spells it).

    Why novel-query last-position accuracy and 0.5: the last (n_ctx−1)-shot prediction is where a
    model that learned the task in context has the most evidence, while the all-position mean
    includes 0-shot o.o.d. predictions that no model can beat chance on (Fig. 1c). A repeated query can
    be answered by copying from the context, which at p = 7 alone scores above 0.5, so only novel
    queries count. 0.5 sits far above chance (1/p ≤ 0.14 for p ≥ 7) and halfway to perfect, so a
    label changes only on a clear difference. The paper gives no number (PAPER.md Table 1 notes);
    both arguments are configurable.
    """
    return TABLE_1.get(phase_pattern(metrics, threshold, key), "unlisted")


def pattern_text(metrics: Mapping[str, Any], threshold: float = 0.5, key: str = PHASE_KEY) -> str:
    """The ✓/✗ pattern as four characters, e.g. ``✓✓✓✗``."""
    return "".join("✓" if ok else "✗" for ok in phase_pattern(metrics, threshold, key))


def _pct(v: float | None) -> str:
    return "  –  " if v is None else f"{v:.3f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def format_table(metrics: Mapping[str, Any], p: int | None = None, threshold: float = 0.5) -> str:
    """A plain-text table of the sets: last-position accuracy of novel queries (the phase metric) and
    of all queries with 95 % intervals and counts, the null models' last-position accuracy on the same
    sequences, the all-position accuracy and the loss; then the algorithm fingerprint of each set (the
    model's accuracy on novel queries that ratio matching can answer, that only modular regression can,
    and that neither can, and what it reads as at ``threshold``, :func:`read_algorithm`), and a line for
    each set whose ratio-matching ceiling lies below ``threshold``: a ✓ there needs modular regression."""
    head = (
        f"{'set':<13}{'novel last':>11}{'95% CI':>14}{'n':>6}  {'last':>6}{'95% CI':>14}{'n':>6}"
        f"{'repeat':>8}{'copy':>7}{'RM':>7}{'MR':>7}  {'all-pos':>7}{'loss':>7}"
    )
    lines = [head]
    present = [s for s in (*SETS, VAL_SET) if s in metrics]
    for s in present:
        m = metrics[s]
        b = m.get("baselines", {})
        bl = "".join(f"{b[k]['acc_last']:>7.3f}" if k in b else f"{'–':>7}" for k in BASELINES)
        lines.append(
            f"{SET_LABELS[s]:<13}{_pct(m.get('acc_last_novel')):>11}{_ci(m.get('acc_last_novel_ci', (0, 1))):>14}"
            f"{m.get('n_novel_last', 0):>6}  {m['acc_last']:>6.3f}{_ci(m.get('acc_last_ci', (0, 1))):>14}"
            f"{m.get('n_sequences', 0):>6}{m.get('repeat_frac_last', 0):>8.2f}{bl}  {m['acc']:>7.3f}{m['loss']:>7.3f}"
        )
    notes = "novel: queries whose (x, y) is not earlier in the sequence; repeat: share of last queries that are repeats"
    notes += (
        "\non the same sequences: copy (right on every repeat, so it equals the repeat share: the null to beat on "
        "all queries); ratio matching (RM) and modular regression (MR), reference algorithms right wherever they "
        "apply (MR is the ceiling)"
    )
    if p:
        notes += f"; chance 1/p = {1 / p:.3f}"
    out = "\n".join(lines) + "\n" + notes
    fp_sets = [s for s in present if "fingerprint" in metrics[s]]
    if fp_sets:
        out += "\n\n" + format_fingerprint({s: metrics[s] for s in fp_sets}, threshold)
    return out


def format_fingerprint(metrics: Mapping[str, Any], threshold: float = 0.5) -> str:
    """The algorithm fingerprint of each set as text: novel last-position accuracy on the queries that
    ratio matching can answer (RM-solvable), that only modular regression can (MR-only) and that no
    in-context algorithm can (neither), each with its 95 % interval, count and share; the label it
    reads as (:func:`read_algorithm`); then, for every set where ratio matching's ceiling (its own
    novel-query accuracy, the RM-solvable share) is below ``threshold``, a line saying that a ✓ there
    needs modular regression."""
    head = f"{'fingerprint':<13}" + "".join(f"{FINGERPRINT_LABELS[c]:>27}" for c in FINGERPRINT) + "  read as"
    lines = [head]
    ceilings = []
    for s, m in metrics.items():
        fp = m["fingerprint"]
        cols = "".join(f"{_pct(fp[c]['acc']):>7}{_ci(fp[c]['acc_ci']):>13} {fp[c]['n']:>5}" + " " for c in FINGERPRINT)
        label = read_algorithm(fp, threshold, pretraining=s in ("id_train", "id_test"))
        lines.append(f"{SET_LABELS[s]:<13}{cols} {ALGORITHM_LABELS[label]}")
        share = fp["rm"]["share"]
        if share is not None and share < threshold and s in SETS:
            ceilings.append(
                f"{SET_LABELS[s]}: ratio matching can answer only {share:.2f} of the novel last-position "
                f"queries (< threshold {threshold:g}), so a ✓ there needs modular regression"
            )
    lines.append(
        f"accuracy on the novel last-position queries [95% CI] and their count, by which reference algorithm "
        f"can answer them; read as modular regression when the MR-only interval is ≥ {threshold:g}, ratio "
        f"matching when the RM-solvable one is ≥ {threshold:g} and the MR-only one below it"
    )
    return "\n".join(lines + ceilings)
