"""Run the interpretability analyses on a checkpoint and write RUN_DIR/analysis/ (``modicl analyze``).

Figures (PNG + PDF) and ``analysis.json`` with every number behind them. The probe task defaults to the
run's first non-degenerate o.o.d. test task (both components non-zero: a task with a = 0 or b = 0 makes
every input on a line through the origin look alike, which no null model separates from a real
pattern); its membership (pre-training, o.o.d. validation, o.o.d. test, or none) is recorded. The probe
example k defaults to the middle of the context.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from . import analysis as A
from . import analysis_plots as P
from .config import ConfigError
from .data import model_inputs
from .rundir import load_checkpoint, write_json
from .runtime import autocast_for, resolve_device, resolve_dtype

ANALYSES = ("attention", "pca", "kaleidoscope", "kshot", "algorithms", "noise", "lens")
MAX_PROBES = 4096  # probe pairs for attention / PCA / similarity: all p² up to p = 61, a random subset above
PROBE_BATCH = 256  # probe sequences per forward pass


def _probe_hooks(what: Sequence[str], n_layers: int, k: int) -> dict[str, list[int] | None]:
    """The hook points the probe analyses in ``what`` read, each with the sequence positions they need
    (x_k, y_k, z_k of probe example k); None for attention patterns (averaged over probes instead)."""
    xyz = [3 * k, 3 * k + 1, 3 * k + 2]
    hooks: dict[str, list[int] | None] = {}
    for i in range(n_layers):
        if "attention" in what:
            hooks[f"blocks.{i}.attn.hook_pattern"] = None
        if "pca" in what or "kaleidoscope" in what:
            hooks[f"blocks.{i}.attn.hook_result"] = xyz
        if "kaleidoscope" in what:
            hooks[f"blocks.{i}.hook_resid_post"] = xyz
    return hooks


@torch.no_grad()
def probe_activations(model: torch.nn.Module, inputs: Tensor, hooks: dict[str, list[int] | None],
                      batch_size: int = PROBE_BATCH) -> dict[str, Tensor]:
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


def task_membership(tasks, task: tuple[int, int]) -> str:
    """Which list of the run's :class:`~modicl.tasks.TaskSet` holds ``task``: ``pre-training``,
    ``o.o.d. validation``, ``o.o.d. test``, or ``none`` (held out but in neither capped list)."""
    for name, arr in (("pre-training", tasks.id_tasks), ("o.o.d. validation", tasks.val_tasks), ("o.o.d. test", tasks.ood_tasks)):
        if any(tuple(t) == tuple(task) for t in arr.tolist()):
            return name
    return "none"


def default_probe_task(tasks) -> tuple[int, int]:
    """The first o.o.d. test task with both components non-zero (the first o.o.d. test task if every
    one is degenerate)."""
    rows = [tuple(int(v) for v in t) for t in tasks.ood_tasks.tolist()]
    return next((t for t in rows if 0 not in t), rows[0])


def run_analyses(
    run_dir: str | Path,
    checkpoint: str = "best_ood",
    task: tuple[int, int] | None = None,
    what: Sequence[str] = ANALYSES,
    context: Sequence[tuple[int, int]] | None = None,
    shots: Sequence[int] | None = None,
    device: str = "auto",
    seed: int = 0,
    max_probes: int = MAX_PROBES,
) -> dict:
    """Run the analyses ``what`` on ``run_dir``'s ``checkpoint``; write figures and analysis.json under
    ``run_dir/analysis``; return the numbers.

    Args:
        task: the probe task (a, b); default :func:`default_probe_task`.
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
        ConfigError: unknown analysis name, task outside Z_p², or a missing checkpoint.
    """
    unknown = set(what) - set(ANALYSES)
    if unknown:
        raise ConfigError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    ck = load_checkpoint(run_dir, checkpoint, dev)
    model, cfg, tasks = ck.model.eval(), ck.config, ck.tasks
    p, n_ctx = cfg.task.p, cfg.task.n_ctx
    autocast = autocast_for(dev, resolve_dtype(cfg.train.dtype, dev))
    task = tuple(task) if task is not None else default_probe_task(tasks)
    if len(task) != 2 or not all(0 <= v < p for v in task):
        raise ConfigError(f"--task {task} must be two residues mod p = {p}")
    is_id = any(tuple(t) == task for t in tasks.id_tasks.tolist())
    membership = task_membership(tasks, task)
    out_dir = run_dir / "analysis"
    g = torch.Generator().manual_seed(seed)
    k = max(1, min(n_ctx // 2, n_ctx - 2))
    res: dict = {"run_dir": str(run_dir), "checkpoint": checkpoint, "step": ck.step, "task": list(task),
                 "task_is_pretraining": is_id, "task_membership": membership,
                 "task_degenerate": 0 in task, "probe_example": k, "skipped": {}}
    figures: list[Path] = []
    probing = [a for a in ("attention", "pca", "kaleidoscope") if a in what]
    if probing and n_ctx < 3:  # the probe example needs one example before it and its z_k inside the model's input
        for a in probing:
            res["skipped"][a] = f"needs n_ctx ≥ 3 (a probe example after the first whose z is read); this run has n_ctx {n_ctx}"
        what = [a for a in what if a not in probing]
    cache: dict = {}
    pairs = A.all_pairs(p)
    probe = A.probe_batch(task, p, n_ctx, k, g) if k < n_ctx else None  # drawn first always: g then draws the k-shot context
    if {"attention", "pca", "kaleidoscope"} & set(what):
        if len(probe) > max_probes:  # bounded memory at large p: a random subset of the p² probe pairs, stated in the output
            keep = torch.randperm(len(probe), generator=torch.Generator().manual_seed(seed + 2))[:max_probes].sort().values
            probe, pairs = probe[keep], pairs[keep]
        res["probes"] = {"used": len(probe), "of": p * p, "subsampled": len(probe) < p * p}
        cache = probe_activations(model, model_inputs(probe).to(dev), _probe_hooks(what, cfg.model.n_layers, k))
    L, H = cfg.model.n_layers, cfg.model.n_heads
    if "attention" in what:
        pats = [cache[f"blocks.{i}.attn.hook_pattern"] for i in range(L)]  # [1, H, T, T] each: the mean over probes
        scores = [A.head_scores(pt) for pt in pats]
        pats = [cache[f"blocks.{i}.attn.hook_pattern.first"] for i in range(L)]  # the first probe, for the maps
        names = [[A.name_head(s, h) for h in range(H)] for s in scores]
        res["attention"] = {f"L{i}H{h}": {"name": names[i][h], **{k2: float(v[h]) for k2, v in scores[i].items()}}
                            for i in range(L) for h in range(H)}
        figures += P.attention_maps(pats, names, out_dir / "attention")
    if "pca" in what:
        per_head, best = {}, None
        for i in range(L):
            r = cache[f"blocks.{i}.attn.hook_result"]  # [probes, 3, H, d] at x_k, y_k, z_k
            for h in range(H):
                feats = torch.cat([r[:, 0, h], r[:, 1, h]], dim=1)
                proj, var = A.centered_pca(feats)
                c = A.circularity(proj, pairs[:, 0], pairs[:, 1])
                per_head[f"L{i}H{h}"] = {**c, "explained_variance": var.tolist()}
                score = c["outer_ring"] + c["inner_rings"] + c["x_separation"]
                if best is None or score > best[0]:
                    best = (score, f"L{i}H{h}", proj)
        res["pca"] = {"heads": per_head, "best_head": best[1]}
        figures += P.pca_scatter(best[2], pairs, p, out_dir / "pca_best_head",
                                 f"head {best[1]} outputs at x_k, y_k (k = {k}), centred PCA; task {task}")
        n_pc = min(4, p)
        emb, var = A.centered_pca(model.wte.weight.detach().float().cpu(), n_pc)
        res["pca"]["embedding_explained_variance"] = var.tolist()
        figures += P.embedding_scatter(emb[:, :2], out_dir / "pca_embedding", "token embeddings, centred PCA: PC 1–2")
        if n_pc == 4:  # the paper's Fig. 1e shows a second plane (even/odd structure) where present
            figures += P.embedding_scatter(emb[:, 2:4], out_dir / "pca_embedding_pc34", "token embeddings, centred PCA: PC 3–4")
    if "kaleidoscope" in what:
        gaps, heads = {}, {}
        for i in range(L):
            block = cache[f"blocks.{i}.hook_resid_post"]  # [probes, 3, d] at x_k, y_k, z_k
            for pos, off in (("x", 0), ("y", 1), ("z", 2)):
                sim = A.cosine_matrix(block[:, off])
                gaps[f"block{i}_{pos}"] = A.ratio_invariance(sim, pairs, p)
                if pos == "z":
                    figures += P.similarity_matrix(sim, out_dir / f"kaleidoscope_block{i}",
                                                   f"block {i} output at z_k (k = {k}); same-line gap {gaps[f'block{i}_z']['gap']:.2f}")
            result = cache[f"blocks.{i}.attn.hook_result"]
            for h in range(H):
                heads[f"L{i}H{h}_z"] = A.ratio_invariance(A.cosine_matrix(result[:, 2, h]), pairs, p)
        res["kaleidoscope"] = {"blocks": gaps, "heads": heads}
    if "kshot" in what:
        if context and not all(len(c) == 2 and 0 <= c[0] < p and 0 <= c[1] < p for c in context):
            raise ConfigError(f"--context {list(context)}: every example must be two residues mod p = {p}")
        ctx = torch.tensor(context) if context else A.all_pairs(p)[torch.randperm(p * p, generator=g)[: n_ctx - 1]]
        top = min(len(ctx), n_ctx - 1)
        shot_list = list(shots) if shots else sorted(s for s in {1, 2, n_ctx // 2, n_ctx - 1} if s <= top)
        bad = [s for s in shot_list if not 0 <= s <= top]
        if bad:
            raise ConfigError(f"--shots {bad}: shot counts must be in [0, {top}] (the context has {len(ctx)} examples, the model reads {n_ctx - 1})")
        grid = A.kshot_grid(model, task, ctx, shot_list, p, autocast=autocast)
        res["kshot"] = {"context": ctx.tolist(), **{str(s): {"accuracy": float(v["accuracy"]),
                        "ratio_matching_accuracy": float(v["ratio_matching"].float().mean()),
                        "model_right_rm_wrong": int((v["difference"] > 0).sum()),
                        "model_wrong_rm_right": int((v["difference"] < 0).sum())} for s, v in grid.items()}}
        figures += P.kshot_grids(grid, out_dir / "kshot_grid", f"task {task} ({'i.d.' if is_id else 'o.o.d.'}), context {ctx[:4].tolist()}…")
    id_t = torch.as_tensor(tasks.id_tasks)
    sets = {"i.d.": id_t, "o.o.d.": torch.as_tensor(tasks.ood_tasks)}
    train_pairs = torch.as_tensor(tasks.train_pairs)
    if "algorithms" in what:
        curves = {name: A.algorithm_curves(model, t, train_pairs, id_t, n_ctx, p, max(1, 1024 // len(t)), _gen(dev, seed), autocast)
                  for name, t in sets.items()}
        res["algorithms"] = curves
        figures += P.algorithm_curves_plot(curves, out_dir / "algorithms")
    if "noise" in what:
        noise = {name: A.label_noise(model, t, train_pairs, n_ctx, p, max(1, 512 // len(t)), _gen(dev, seed), autocast)
                 for name, t in sets.items()}
        res["label_noise"] = noise
        figures += P.line_plot(noise, out_dir / "label_noise", "corrupted context labels", "last-position accuracy",
                               f"label noise (training inputs, {n_ctx - 1} context examples)")
    if "lens" in what:
        from .data import sample_sequences

        lens = {}
        for name, t in sets.items():
            toks = sample_sequences(t.to(dev), train_pairs.to(dev), max(1, 512 // len(t)), n_ctx, p, _gen(dev, seed), shared_inputs=False)
            with autocast:
                lens[name] = A.logit_lens(model, toks)
        res["logit_lens"] = lens
        figures += P.line_plot(lens, out_dir / "logit_lens", "block", "last-position accuracy", "logit lens")
    res["figures"] = [str(f.relative_to(run_dir)) for f in figures if f.suffix == ".png"]
    write_json(out_dir / "analysis.json", _finite(res))
    return res


def _finite(obj):
    """NaN (an agreement with no support) → None, so analysis.json is strict JSON."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _gen(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed + 1)
    return g
