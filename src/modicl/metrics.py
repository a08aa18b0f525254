"""Accuracy on the four evaluation sets, per position (k-shot), and the phase label.

The sets cross pre-training (i.d.) or held-out (o.o.d.) task vectors with training or held-out input
pairs (PAPER.md §1.7). For each set we report the all-position accuracy (every z of every sequence,
0-shot to (n_ctx−1)-shot), the last-position accuracy (the (n_ctx−1)-shot prediction), the accuracy at
every position k (the k-shot curve, Fig. 1c) and the cross-entropy on z tokens (PAPER.md §1.9). Every
task contributes the same number of sequences, so plain means equal the paper's per-task-then-mean.
Counts are int64 and losses fp64 whatever the autocast dtype, so no count is rounded.

The phase (PAPER.md Table 1) is read from last-position accuracies with a threshold (see
:func:`classify_phase` for why last position and 0.5).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import model_inputs, sample_sequences, z_logits, z_targets

SETS = ("id_train", "id_test", "ood_train", "ood_test")
SET_LABELS = {"id_train": "i.d. train", "id_test": "i.d. test", "ood_train": "o.o.d. train", "ood_test": "o.o.d. test"}
PHASES = ("none", "id_memorization", "id_generalization", "ood_memorization", "ood_generalization")
PHASE_LABELS = {
    "none": "none (no set learned)",
    "id_memorization": "i.d. memorization",
    "id_generalization": "i.d. generalization",
    "ood_memorization": "o.o.d. memorization",
    "ood_generalization": "o.o.d. generalization",
}


class Counts:
    """Running int64 / fp64 sums for one set: correct[k], loss_sum[k] over n sequences."""

    def __init__(self, n_ctx: int, device: torch.device):
        self.correct = torch.zeros(n_ctx, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros(n_ctx, dtype=torch.float64, device=device)
        self.n = 0

    def add(self, logits: Tensor, targets: Tensor) -> None:
        """logits [B, n_ctx, V] at the y positions, targets int64 [B, n_ctx]."""
        self.correct += (logits.argmax(-1) == targets).sum(0, dtype=torch.int64)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # [B, n_ctx]
        self.loss_sum += loss.sum(0, dtype=torch.float64)
        self.n += targets.shape[0]

    def result(self) -> dict:
        """{'acc', 'acc_last', 'loss', 'kshot' (list of n_ctx accuracies), 'n_sequences'} as Python numbers."""
        correct, loss = self.correct.cpu(), self.loss_sum.cpu()
        n_pred = self.n * correct.numel()
        return {
            "acc": correct.sum().item() / n_pred,
            "acc_last": correct[-1].item() / self.n,
            "loss": loss.sum().item() / n_pred,
            "kshot": (correct.double() / self.n).tolist(),
            "n_sequences": self.n,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    sets: Mapping[str, tuple[Tensor, Tensor]],
    *,
    n_ctx: int,
    p: int,
    sequences: int,
    batch_size: int,
    generator: torch.Generator,
    autocast: contextlib.AbstractContextManager | None = None,
    shared_inputs: bool = True,
    replacement: bool = True,
) -> dict[str, dict]:
    """Evaluate ``model`` on each named set.

    Args:
        model: maps int64 tokens [B, T] to logits [B, T, p].
        sets: {name: (tasks int64 [n_tasks, 2], pairs int64 [n_pairs, 2])}, on the model's device.
        n_ctx, p: sequence length in examples; modulus.
        sequences: sequences per set, spread evenly over its tasks (rounded up to ≥ 1 per task).
        batch_size: sequences per forward pass.
        generator: torch.Generator on the device; determines every evaluation sequence.
        autocast: context for the forward pass (e.g. bf16 autocast); counts stay exact.
        shared_inputs, replacement: as in :func:`modicl.data.sample_sequences`.

    Returns:
        {name: Counts.result()}.
    """
    was_training = model.training
    model.eval()
    out = {}
    for name, (tasks, pairs) in sets.items():
        per_task = max(1, math.ceil(sequences / tasks.shape[0]))
        tokens = sample_sequences(tasks, pairs, per_task, n_ctx, p, generator, shared_inputs, replacement)
        counts = Counts(n_ctx, tokens.device)
        for chunk in tokens.split(batch_size):
            with autocast or contextlib.nullcontext():
                logits = model(model_inputs(chunk))
            counts.add(z_logits(logits), z_targets(chunk))
        out[name] = counts.result()
    model.train(was_training)
    return out


def classify_phase(metrics: Mapping[str, Mapping[str, float]], threshold: float = 0.5, key: str = "acc_last") -> str:
    """The paper's phase of a run (PAPER.md Table 1) from its accuracies on the four sets.

    A set is "solved" when ``metrics[set][key] ≥ threshold``. Then, in order: i.d. train unsolved →
    ``none``; both o.o.d. sets solved → ``ood_generalization``; o.o.d. train solved →
    ``ood_memorization``; i.d. test solved → ``id_generalization``; else ``id_memorization``.

    Why last position and 0.5: the last (n_ctx−1)-shot prediction is where a model that learned the
    task in context has the most evidence, while the all-position mean includes 0-shot o.o.d.
    predictions that no model can beat chance on and few-shot ones that even the paper's models miss
    (Fig. 1c), so it understates in-context skill. 0.5 sits far above chance (1/p ≤ 0.14 for p ≥ 7) and
    halfway to perfect, so a label changes only on a clear difference. The paper gives no number
    (PAPER.md §6.2); both arguments are configurable.
    """
    ok = {s: metrics[s][key] >= threshold for s in SETS}
    if not ok["id_train"]:
        return "none"
    if ok["ood_train"] and ok["ood_test"]:
        return "ood_generalization"
    if ok["ood_train"]:
        return "ood_memorization"
    if ok["id_test"]:
        return "id_generalization"
    return "id_memorization"


def format_table(metrics: Mapping[str, Mapping[str, float]], p: int | None = None) -> str:
    """A plain-text table of acc / acc_last / loss for the four sets."""
    lines = [f"{'set':<14}{'acc (all)':>11}{'acc (last)':>12}{'loss':>9}"]
    for s in SETS:
        m = metrics[s]
        lines.append(f"{SET_LABELS[s]:<14}{m['acc']:>11.3f}{m['acc_last']:>12.3f}{m['loss']:>9.3f}")
    if p:
        lines.append(f"(chance accuracy 1/p = {1 / p:.3f})")
    return "\n".join(lines)
