"""Reading an evaluation (:func:`modicl.metrics.evaluate`'s results): the paper's phase of a run (PAPER.md
Table 1) from novel-query last-position accuracies and a threshold, the reference algorithm a set reads as
from its fingerprint, the per-set numbers kept in summary.json and the results tables, and the plain-text
tables that ``modicl train``, ``modicl eval`` and ``modicl sweep`` print.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .metrics import BASELINES, FINGERPRINT, FINGERPRINT_LABELS, PHASE_KEY, SET_LABELS, SETS, VAL_SET

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


def read_algorithm(fingerprint: Mapping[str, Mapping], threshold: float = 0.5, pretraining: bool = False) -> str:
    """Which reference algorithm a set's answers read as, from its last-position :data:`modicl.metrics.FINGERPRINT`.

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
        fingerprint: {class: {"acc", "acc_ci": [lo, hi], "n", ...}} as in :func:`modicl.metrics.evaluate`'s results.
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
    """The :data:`SUMMARY_KEYS` of one set's :func:`modicl.metrics.evaluate` result, each null model's last-position
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
