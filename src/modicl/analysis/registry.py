"""Run the interpretability analyses on a checkpoint and write RUN_DIR/analysis/ (``modicl analyze``).

Figures (PNG + PDF) and ``analysis.json`` with every number behind them. Each analysis is one function
registered by name with :func:`analysis` in :data:`ANALYSES`; it reads a shared :class:`Subject` (the
model, the run's tasks, the probe activations) and returns its numbers and figures. The command line's
``--what`` choices come from the registry, so a new analysis is one decorated function here (its
numerics in :mod:`modicl.analysis.measures`, its figures in :mod:`modicl.analysis.figures`).

The probe task defaults to the run's first non-degenerate o.o.d. test task (every component non-zero:
a task with a = 0 or b = 0 makes every input on a line through the origin look alike, which no null
model separates from a real pattern); its membership (pre-training, o.o.d. validation, o.o.d. test, or
none) is recorded. The probe example k defaults to the middle of the context. Analyses that read the
(x, y) plane (``planar``) need n_var = 2 (:mod:`modicl.family`): for other runs they are skipped with
a reason, or refused when asked for by name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import ConfigError, RunConfig
from ..data import model_inputs
from ..family import example_positions, n_vectors
from ..history import BEST_OOD, FIXED, file_stem
from ..model import Transformer
from ..rundir import RunDir, load_checkpoint, write_json
from ..runtime import autocast_for, resolve_device, resolve_dtype
from ..staging import staged
from ..tasks import TaskSet
from . import figures as P
from . import measures as A

MAX_PROBES = 4096  # probe pairs for attention / PCA / similarity: all p² up to p = 61, a random subset above
PROBE_BATCH = 256  # probe sequences per forward pass


@dataclass(frozen=True)
class Analysis:
    """One registered analysis.

    Attributes:
        name: its name on the command line (``--what NAME``).
        key: where its numbers go in analysis.json.
        run: ``run(subject) -> (numbers, figure paths)``.
        probe_hooks: for analyses that read the probe sequences' activations: ``probe_hooks(layer,
            positions)`` → {hook point: sequence positions to keep, or None for an attention pattern},
            where positions are those of the probe example's tokens (x_k, y_k, z_k for n_var = 2); None
            for analyses that do not read them.
        planar: it reads the (x, y) plane, so it needs a run with n_var = 2.
    """

    name: str
    key: str
    run: Callable[[Subject], tuple[Any, list[Path]]]
    probe_hooks: Callable[[int, list[int]], dict[str, list[int] | None]] | None = None
    planar: bool = False


ANALYSES: dict[str, Analysis] = {}  # in the order they run and appear in analysis.json


def analysis(
    name: str,
    *,
    key: str | None = None,
    probe_hooks: Callable[[int, list[int]], dict[str, list[int] | None]] | None = None,
    planar: bool = False,
):
    """Decorator: register ``fn(subject) -> (numbers, figures)`` as the analysis ``name`` (see
    :class:`Analysis`; ``key`` defaults to ``name``)."""

    def register(fn):
        ANALYSES[name] = Analysis(name, key or name, fn, probe_hooks, planar)
        return fn

    return register


@dataclass
class Subject:
    """What the analyses read: the checkpoint's model and run, the probe task and the probe activations.

    The probe sequences (:func:`modicl.analysis.probe_batch`) are one per probe input, their example k
    being that input; ``pairs`` int64 [probes, n_var] lists the inputs (all of Z_p^n_var, or a seeded
    subset at large p) and ``cache`` holds the sequences' activations at the hook points the selected
    analyses asked for (:func:`probe_activations`). ``generator`` has drawn the probe sequences and then
    draws the k-shot grid's context.
    """

    model: Transformer
    cfg: RunConfig
    tasks: TaskSet
    device: torch.device
    autocast: contextlib.AbstractContextManager
    task: tuple[int, ...]
    is_id: bool
    k: int
    pairs: Tensor
    generator: torch.Generator
    seed: int
    out_dir: Path
    context: Sequence[tuple[int, ...]] | None = None
    shots: Sequence[int] | None = None
    cache: dict[str, Tensor] = field(default_factory=dict)

    @property
    def p(self) -> int:
        return self.cfg.task.p

    @property
    def n_ctx(self) -> int:
        return self.cfg.task.n_ctx

    def task_sets(self) -> dict[str, Tensor]:
        """The pre-training and o.o.d. test task vectors, int64 [n, n_var], named as the figures name them."""
        return {"i.d.": torch.as_tensor(self.tasks.id_tasks), "o.o.d.": torch.as_tensor(self.tasks.ood_tasks)}

    def train_pairs(self) -> Tensor:
        return torch.as_tensor(self.tasks.train_pairs)

    def fresh_generator(self) -> torch.Generator:
        """A generator on the model's device seeded from ``seed``, the same for every analysis that asks."""
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed + 1)
        return g


@torch.no_grad()
def probe_activations(
    model: torch.nn.Module, inputs: Tensor, hooks: dict[str, list[int] | None], batch_size: int = PROBE_BATCH
) -> dict[str, Tensor]:
    """Run ``inputs`` [N, T] through ``model`` in batches and keep only what the analyses read.

    Args:
        hooks: hook point → sequence positions to keep (activations [N, len(positions), …], position
            axis 1), or None for an attention pattern, kept as its mean over the N inputs.
    Returns:
        float32 CPU tensors: ``name`` → [N, len(positions), …] for positioned hooks; for pattern hooks
        ``name`` → the mean pattern [1, H, T, T] and ``name + '.first'`` → the first input's [1, H, T, T].
    """
    kept: dict[str, list[Tensor]] = {n: [] for n in hooks}
    first: dict[str, Tensor] = {}

    def keep(name: str, positions: list[int] | None):
        def hook(t: Tensor) -> None:
            if positions is not None:
                kept[name].append(t[:, positions].float().cpu())
            else:
                kept[name].append(t.float().sum(0, keepdim=True).cpu())
                first.setdefault(name, t[:1].float().cpu())

        return hook

    fns = {n: keep(n, pos) for n, pos in hooks.items()}
    for chunk in inputs.split(batch_size):
        model(chunk, hooks=fns)
    out = {}
    for n, pos in hooks.items():
        if pos is None:
            out[n] = torch.cat(kept[n]).sum(0, keepdim=True) / len(inputs)
            out[n + ".first"] = first[n]
        else:
            out[n] = torch.cat(kept[n])
    return out


def task_membership(tasks, task: tuple[int, ...]) -> str:
    """Which list of the run's :class:`~modicl.tasks.TaskSet` holds ``task``: ``pre-training``,
    ``o.o.d. validation``, ``o.o.d. test``, or ``none`` (held out but in neither capped list)."""
    for name, arr in (
        ("pre-training", tasks.id_tasks),
        ("o.o.d. validation", tasks.val_tasks),
        ("o.o.d. test", tasks.ood_tasks),
    ):
        if any(tuple(t) == tuple(task) for t in arr.tolist()):
            return name
    return "none"


def default_probe_task(tasks) -> tuple[int, ...]:
    """The first o.o.d. test task with every component non-zero (the first o.o.d. test task if every
    one is degenerate)."""
    rows = [tuple(int(v) for v in t) for t in tasks.ood_tasks.tolist()]
    return next((t for t in rows if 0 not in t), rows[0])


def run_analyses(
    run_dir: str | Path,
    checkpoint: str = BEST_OOD,
    task: tuple[int, ...] | None = None,
    what: Sequence[str] | None = None,
    context: Sequence[tuple[int, ...]] | None = None,
    shots: Sequence[int] | None = None,
    device: str = "auto",
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> dict:
    """Run the analyses ``what`` (names in :data:`ANALYSES`; None: all of them) on ``run_dir``'s
    ``checkpoint``; write figures and analysis.json under ``run_dir/analysis``; return the numbers.

    Args:
        task: the probe task (a, b) (n_var residues); default :func:`default_probe_task`.
        context: explicit k-shot-grid context inputs [(x, y), …]; default distinct random pairs.
        shots: k-shot-grid shot counts; default 1, 2, n_ctx/2, n_ctx − 1.
        max_probes: the attention, PCA and similarity analyses use at most this many of the p² probe
            pairs (a seeded random subset above it, recorded under ``probes`` in the result), so their
            memory stays bounded at large p: the similarity matrices are [probes, probes].

    Analyses that the run's context is too short for are left out with a reason under ``skipped``.
    Memory: activations are kept only at the three probe positions (x_k, y_k, z_k) and the attention
    patterns only as their mean over probes plus the first probe's; the forward passes run in batches
    of ``PROBE_BATCH`` probes. Measured in BENCHMARKS.md.

    Raises:
        ConfigError: unknown analysis name, an analysis named that needs n_var = 2 on another run, task
            outside Z_p^n_var, or a missing checkpoint.
    """
    named = what is not None and set(what) != set(ANALYSES)  # all of them (the CLI's default) is not a choice
    what = tuple(ANALYSES) if what is None else what
    unknown = set(what) - set(ANALYSES)
    if unknown:
        raise ConfigError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    ck = load_checkpoint(run_dir, checkpoint, dev)
    model, cfg, tasks = ck.model.eval(), ck.config, ck.tasks
    p, n_ctx, n_var = cfg.task.p, cfg.task.n_ctx, cfg.task.n_var
    planar = [n for n in what if ANALYSES[n].planar]
    if named and planar and n_var != 2:
        others = ", ".join(n for n, a in ANALYSES.items() if not a.planar)
        raise ConfigError(
            f"--what {' '.join(planar)} reads the (x, y) plane and needs task.n_var = 2; this run has "
            f"n_var {n_var} (choose from {others})"
        )
    autocast = autocast_for(dev, resolve_dtype(cfg.train.dtype, dev))
    task = tuple(task) if task is not None else default_probe_task(tasks)
    if len(task) != n_var or not all(0 <= v < p for v in task):
        raise ConfigError(f"--task {task} must be {({2: 'two', 3: 'three'}).get(n_var, n_var)} residues mod p = {p}")
    is_id = any(tuple(t) == task for t in tasks.id_tasks.tolist())
    k = max(1, min(n_ctx // 2, n_ctx - 2))
    res: dict = {
        "run_dir": str(run_dir),
        "checkpoint": checkpoint,
        "step": ck.step,
        "task": list(task),
        "task_is_pretraining": is_id,
        "task_membership": task_membership(tasks, task),
        "task_degenerate": 0 in task,
        "probe_example": k,
        "skipped": {},
    }
    selected = [a for name, a in ANALYSES.items() if name in what]
    for a in (a for a in selected if a.planar and n_var != 2):
        res["skipped"][a.name] = f"reads the (x, y) plane, needs n_var = 2; this run has n_var {n_var}"
    selected = [a for a in selected if not (a.planar and n_var != 2)]
    probing = [a for a in selected if a.probe_hooks is not None]
    if probing and n_ctx < 3:  # the probe example needs one example before it and its z_k inside the model's input
        for a in probing:
            res["skipped"][a.name] = (
                f"needs n_ctx ≥ 3 (a probe example after the first whose z is read); this run has n_ctx {n_ctx}"
            )
        selected = [a for a in selected if a.probe_hooks is None]
        probing = []
    g = torch.Generator().manual_seed(seed)
    out_dir = analysis_dir(run_dir, checkpoint)
    # written into a staging folder and moved into out_dir when complete: an interrupted or failed analysis
    # leaves the previous one as it was; an analysis of another step replaces every file of the old one
    with staged(out_dir, replace_all=not _same_step(out_dir, ck.step)) as stage:
        subject = Subject(
            model,
            cfg,
            tasks,
            dev,
            autocast,
            task,
            is_id,
            k,
            A.all_inputs(p, n_var=n_var),
            g,
            seed,
            stage,
            context,
            shots,
        )
        # drawn first always: g then draws the k-shot context
        probe = A.probe_batch(task, p, n_ctx, k, g) if k < n_ctx else None
        if probing and probe is not None:
            if (
                len(probe) > max_probes
            ):  # bounded memory at large p: a random subset of the probe inputs, stated in the output
                keep = (
                    torch.randperm(len(probe), generator=torch.Generator().manual_seed(seed + 2))[:max_probes]
                    .sort()
                    .values
                )
                probe, subject.pairs = probe[keep], subject.pairs[keep]
            n_probes = n_vectors(p, n_var)
            res["probes"] = {"used": len(probe), "of": n_probes, "subsampled": len(probe) < n_probes}
            xyz = example_positions(k, n_var)
            hooks = {
                name: pos
                for i in range(cfg.model.n_layers)
                for a in probing
                if a.probe_hooks is not None
                for name, pos in a.probe_hooks(i, xyz).items()
            }
            subject.cache = probe_activations(model, model_inputs(probe).to(dev), hooks)
        figures: list[Path] = []
        for a in selected:
            res[a.key], figs = a.run(subject)
            figures += figs
        res["figures"] = [
            str((out_dir / f.relative_to(stage)).relative_to(run_dir)) for f in figures if f.suffix == ".png"
        ]
        write_json(stage / "analysis.json", _finite(res))
    return res


def _same_step(out_dir: Path, step: int) -> bool:
    """Whether ``out_dir`` holds an analysis of ``step`` (``best_ood`` and ``last`` share RUN_DIR/analysis;
    a new analysis of another step replaces all of the old one's files, so the folder never mixes two)."""
    try:
        return json.loads((out_dir / "analysis.json").read_text()).get("step") == step
    except (OSError, ValueError):
        return False


def _layers_heads(s: Subject) -> tuple[int, int]:
    return s.cfg.model.n_layers, s.cfg.model.n_heads


def analysis_dir(run_dir: str | Path, checkpoint: str) -> Path:
    """RUN_DIR/analysis for ``best_ood`` and ``last``; RUN_DIR/analysis/step-NNNNNNN for a kept ``step:N``,
    so the analyses of a run's history sit side by side."""
    stem = file_stem(checkpoint)
    base = RunDir(run_dir).analysis
    return base if stem in FIXED else base / stem


@analysis("attention", probe_hooks=lambda i, xyz: {f"blocks.{i}.attn.hook_pattern": None})
def attention(s: Subject) -> tuple[dict, list[Path]]:
    """Every head's mean attention pattern over the probes, scored and named (previous-token, two-back,
    sink, stripe; PAPER.md §4.4); the maps of the first probe."""
    L, H = _layers_heads(s)
    scores = [
        A.head_scores(s.cache[f"blocks.{i}.attn.hook_pattern"], n_var=s.cfg.task.n_var) for i in range(L)
    ]  # [1, H, T, T] each: the mean over probes
    pats = [s.cache[f"blocks.{i}.attn.hook_pattern.first"] for i in range(L)]  # the first probe, for the maps
    names = [[A.name_head(sc, h) for h in range(H)] for sc in scores]
    res = {
        f"L{i}H{h}": {"name": names[i][h], **{k2: float(v[h]) for k2, v in scores[i].items()}}
        for i in range(L)
        for h in range(H)
    }
    return res, P.attention_maps(pats, names, s.out_dir / "attention")


@analysis("pca", probe_hooks=lambda i, xyz: {f"blocks.{i}.attn.hook_result": xyz}, planar=True)
def pca(s: Subject) -> tuple[dict, list[Path]]:
    """Centred PCA of every head's outputs at x_k, y_k over the probe pairs, with circle-of-circles
    scores, and of the token embeddings (PAPER.md §4.5, Fig. 1d–e)."""
    L, H = _layers_heads(s)
    per_head, best = {}, None
    for i in range(L):
        r = s.cache[f"blocks.{i}.attn.hook_result"]  # [probes, 3, H, d] at x_k, y_k, z_k
        for h in range(H):
            feats = torch.cat([r[:, 0, h], r[:, 1, h]], dim=1)
            proj, var = A.centered_pca(feats)
            c = A.circularity(proj, s.pairs[:, 0], s.pairs[:, 1])
            per_head[f"L{i}H{h}"] = {**c, "explained_variance": var.tolist()}
            score = c["outer_ring"] + c["inner_rings"] + c["x_separation"]
            if best is None or score > best[0]:
                best = (score, f"L{i}H{h}", proj)
    assert best is not None  # every model has at least one head
    res = {"heads": per_head, "best_head": best[1]}
    figures = P.pca_scatter(
        best[2],
        s.pairs,
        s.p,
        s.out_dir / "pca_best_head",
        f"head {best[1]} outputs at x_k, y_k (k = {s.k}), centred PCA; task {s.task}",
    )
    n_pc = min(4, s.p)
    emb, var = A.centered_pca(s.model.wte.weight.detach().float().cpu(), n_pc)
    res["embedding_explained_variance"] = var.tolist()
    figures += P.embedding_scatter(emb[:, :2], s.out_dir / "pca_embedding", "token embeddings, centred PCA: PC 1–2")
    if n_pc == 4:  # the paper's Fig. 1e shows a second plane (even/odd structure) where present
        figures += P.embedding_scatter(
            emb[:, 2:4], s.out_dir / "pca_embedding_pc34", "token embeddings, centred PCA: PC 3–4"
        )
    return res, figures


@analysis(
    "kaleidoscope",
    probe_hooks=lambda i, xyz: {f"blocks.{i}.attn.hook_result": xyz, f"blocks.{i}.hook_resid_post": xyz},
    planar=True,
)
def kaleidoscope(s: Subject) -> tuple[dict, list[Path]]:
    """Cosine similarities of block and head outputs over the probe pairs, and how much more alike pairs
    on one line through the origin are than others (PAPER.md §4.6)."""
    L, H = _layers_heads(s)
    gaps, heads, figures = {}, {}, []
    train = s.train_pairs()
    is_train = (s.pairs[:, None, :] == train[None]).all(-1).any(1)  # [probes]: a pre-training input
    for i in range(L):
        block = s.cache[f"blocks.{i}.hook_resid_post"]  # [probes, 3, d] at x_k, y_k, z_k
        for pos, off in (("x", 0), ("y", 1), ("z", 2)):
            sim = A.cosine_matrix(block[:, off])
            gaps[f"block{i}_{pos}"] = A.ratio_invariance(sim, s.pairs, s.p)
            if pos == "z":  # held-out inputs against training inputs, and the training inputs among themselves
                gaps[f"block{i}_z_heldout_vs_train"] = A.ratio_invariance(sim, s.pairs, s.p, ~is_train, is_train)
                gaps[f"block{i}_z_train"] = A.ratio_invariance(sim, s.pairs, s.p, is_train, is_train)
                figures += P.similarity_matrix(
                    sim,
                    s.out_dir / f"kaleidoscope_block{i}",
                    f"block {i} output at z_k (k = {s.k}); same-line gap {gaps[f'block{i}_z']['gap']:.2f}",
                )
        result = s.cache[f"blocks.{i}.attn.hook_result"]
        for h in range(H):
            heads[f"L{i}H{h}_z"] = A.ratio_invariance(A.cosine_matrix(result[:, 2, h]), s.pairs, s.p)
    return {"blocks": gaps, "heads": heads}, figures


@analysis("kshot", planar=True)
def kshot(s: Subject) -> tuple[dict, list[Path]]:
    """The model's answer on every query (x, y) after k examples of one context, next to ratio matching
    (PAPER.md Fig. 5, §4.7)."""
    p, n_ctx = s.p, s.n_ctx
    if s.context and not all(len(c) == 2 and 0 <= c[0] < p and 0 <= c[1] < p for c in s.context):
        raise ConfigError(f"--context {list(s.context)}: every example must be two residues mod p = {p}")
    ctx = (
        torch.tensor(s.context)
        if s.context
        else A.all_inputs(p, n_var=2)[torch.randperm(p * p, generator=s.generator)[: n_ctx - 1]]
    )
    top = min(len(ctx), n_ctx - 1)
    shot_list = list(s.shots) if s.shots else sorted(k for k in {1, 2, n_ctx // 2, n_ctx - 1} if k <= top)
    bad = [k for k in shot_list if not 0 <= k <= top]
    if bad:
        raise ConfigError(
            f"--shots {bad}: shot counts must be in [0, {top}] (the context has {len(ctx)} examples, the model reads "
            f"{n_ctx - 1})"
        )
    grid = A.kshot_grid(s.model, (s.task[0], s.task[1]), ctx, shot_list, p, autocast=s.autocast)
    res = {
        "context": ctx.tolist(),
        **{
            str(k): {
                "accuracy": float(v["accuracy"]),
                "ratio_matching_accuracy": float(v["ratio_matching"].float().mean()),
                "model_right_rm_wrong": int((v["difference"] > 0).sum()),
                "model_wrong_rm_right": int((v["difference"] < 0).sum()),
            }
            for k, v in grid.items()
        },
    }
    title = f"task {s.task} ({'i.d.' if s.is_id else 'o.o.d.'}), context {ctx[:4].tolist()}…"
    return res, P.kshot_grids(grid, s.out_dir / "kshot_grid", title)


@analysis("algorithms")
def algorithms(s: Subject) -> tuple[dict, list[Path]]:
    """k-shot accuracy of the model next to ratio matching, modular regression and the i.d. Bayes
    predictor, and the model's agreement with each (the algorithmic shift, PAPER.md §4.1–4.3)."""
    id_t = torch.as_tensor(s.tasks.id_tasks)
    curves = {
        name: A.algorithm_curves(
            s.model, t, s.train_pairs(), id_t, s.n_ctx, s.p, max(1, 1024 // len(t)), s.fresh_generator(), s.autocast
        )
        for name, t in s.task_sets().items()
    }
    return curves, P.algorithm_curves_plot(curves, s.out_dir / "algorithms")


@analysis("noise", key="label_noise")
def noise(s: Subject) -> tuple[dict, list[Path]]:
    """Last-position accuracy as more context labels are corrupted (PAPER.md §4.8)."""
    res = {
        name: A.label_noise(
            s.model, t, s.train_pairs(), s.n_ctx, s.p, max(1, 512 // len(t)), s.fresh_generator(), s.autocast
        )
        for name, t in s.task_sets().items()
    }
    return res, P.line_plot(
        res,
        s.out_dir / "label_noise",
        "corrupted context labels",
        "last-position accuracy",
        f"label noise (training inputs, {s.n_ctx - 1} context examples)",
    )


@analysis("lens", key="logit_lens")
def lens(s: Subject) -> tuple[dict, list[Path]]:
    """Last-position accuracy read out after every block through the final LayerNorm and unembedding
    (the logit lens, PAPER.md §4.8)."""
    from ..data import sample_sequences

    res = {}
    for name, t in s.task_sets().items():
        toks = sample_sequences(
            t.to(s.device),
            s.train_pairs().to(s.device),
            max(1, 512 // len(t)),
            s.n_ctx,
            s.p,
            s.fresh_generator(),
            shared_inputs=False,
        )
        with s.autocast:
            res[name] = A.logit_lens(s.model, toks)
    return res, P.line_plot(res, s.out_dir / "logit_lens", "block", "last-position accuracy", "logit lens")


def _finite(obj):
    """NaN (an agreement with no support) → None, so analysis.json is strict JSON."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
