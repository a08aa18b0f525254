"""What the reference algorithms can reach: ratio matching (RM) and modular regression (MR) on the novel
last-position queries of the o.o.d. sets, for several (p, n_ctx) at α and n_id's share of p².

Sequences are drawn as the evaluation draws them (inputs independent per sequence, with replacement);
a query is novel when its (x, y) is not among its context's inputs. A phase's o.o.d.-test ✓ needs ≥ 0.5
on these queries, so where RM's ceiling is below 0.5 only modular regression could pass (PAPER.md §4).

    python scripts/rm_ceiling.py                     # the table in docs/quick-preset.md
    python scripts/rm_ceiling.py --grid 11:32 29:32  # chosen (p, n_ctx) pairs
"""

import argparse

import torch

from modicl.algorithms import modular_regression, ratio_matching
from modicl.config import TaskConfig
from modicl.data import sample_sequences
from modicl.evaluation import eval_sets, task_tensors
from modicl.tasks import make_task_set


def ceilings(
    p: int, n_ctx: int, alpha: float, id_share: float, sequences: int, seed: int
) -> dict[str, tuple[float, float, int]]:
    """{set: (RM accuracy, MR accuracy, novel queries)} on the o.o.d. train and test sets."""
    n_id = max(4, round(id_share * p * p / 4) * 4)
    tasks = make_task_set(TaskConfig(p=p, n_id=n_id, alpha=alpha, n_ctx=n_ctx), seed)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in ("ood_train", "ood_test"):
        w, pairs = eval_sets(task_tensors(tasks, torch.device("cpu")))[name]
        per_task = -(-sequences // w.shape[0])
        seq = sample_sequences(w, pairs, per_task, n_ctx, p, gen, shared_inputs=False).view(-1, n_ctx, 3)
        ctx_xy, ctx_z, query, z = seq[:, :-1, :2], seq[:, :-1, 2], seq[:, -1, :2], seq[:, -1, 2]
        novel = ~(ctx_xy == query[:, None]).all(-1).any(-1)
        rm = (ratio_matching(ctx_xy, ctx_z, query, p) == z)[novel].float().mean().item()
        mr = (modular_regression(ctx_xy, ctx_z, query, p) == z)[novel].float().mean().item()
        out[name] = (rm, mr, int(novel.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--grid", nargs="*", default=["7:16", "7:32", "11:16", "11:32", "13:32", "17:32", "29:32"], help="p:n_ctx pairs"
    )
    ap.add_argument("--alpha", type=float, default=0.8)
    ap.add_argument("--id-share", type=float, default=64 / 121, help="n_id as a share of p² (quick-p11: 64 of 121)")
    ap.add_argument("--sequences", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=1, help="task seed (the split of tasks and inputs)")
    a = ap.parse_args()
    print(
        f"α {a.alpha}, n_id ≈ {a.id_share:.0%} of p², {a.sequences} sequences per set, task seed {a.seed}; novel "
        "last-position queries"
    )
    print("| p | n_ctx | RM, o.o.d. test | MR, o.o.d. test | RM, o.o.d. train | MR, o.o.d. train |")
    print("| --- | --- | --- | --- | --- | --- |")
    for cell in a.grid:
        p, n_ctx = (int(v) for v in cell.split(":"))
        c = ceilings(p, n_ctx, a.alpha, a.id_share, a.sequences, a.seed)
        print(
            f"| {p} | {n_ctx} | {c['ood_test'][0]:.2f} ({c['ood_test'][2]}) | {c['ood_test'][1]:.2f} | "
            f"{c['ood_train'][0]:.2f} ({c['ood_train'][2]}) | {c['ood_train'][1]:.2f} |"
        )


if __name__ == "__main__":
    main()
