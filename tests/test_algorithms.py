import itertools

import pytest
import torch

from modicl.algorithms import (
    bayes_id,
    inverse_table,
    modular_regression,
    ratio_matching,
    ratio_matching_expected_accuracy,
    solve_task,
)


def _grid(p):
    return torch.tensor(list(itertools.product(range(p), repeat=2)))


def test_inverse_table():
    inv = inverse_table(29)
    assert all((n * int(inv[n])) % 29 == 1 for n in range(1, 29))


def test_ratio_matching_by_hand():
    # task (2, 3) mod 7, one example (1, 1) → z = 5
    ctx, z = torch.tensor([[1, 1]]), torch.tensor([5])
    q = torch.tensor([[2, 2], [6, 6], [1, 2], [0, 0], [3, 0]])
    got = ratio_matching(ctx.expand(5, 1, 2), z.expand(5, 1), q, 7)
    assert got.tolist() == [3, 2, -1, 0, -1]  # 2·5 = 10 ≡ 3; 6·5 = 30 ≡ 2; off the line; origin; off the line
    # a vertical example (0, 4): the query (0, 3) = (3·4⁻¹)·(0, 4) = 6·(0, 4) mod 7, ẑ = 6·z
    got = ratio_matching(torch.tensor([[[0, 4]]]), torch.tensor([[5]]), torch.tensor([[0, 3]]), 7)
    assert got.tolist() == [(6 * 5) % 7]


def test_solve_task_matches_brute_force_enumeration():
    p = 5
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        task = torch.randint(0, p, (2,), generator=g)
        xy = torch.randint(0, p, (3, 2), generator=g)
        z = (xy @ task) % p
        found, ok = solve_task(xy, z, p)
        consistent = [
            t
            for t in itertools.product(range(p), repeat=2)
            if all((t[0] * x + t[1] * y) % p == zz for (x, y), zz in zip(xy.tolist(), z.tolist()))
        ]
        if ok:
            assert consistent == [tuple(found.tolist())]
        else:
            assert len(consistent) > 1 and found.tolist() == [-1, -1]


def test_bayes_predictor_matches_a_python_loop():
    p = 7
    g = torch.Generator().manual_seed(1)
    id_tasks = _grid(p)[torch.randperm(49, generator=g)[:12]]
    for _ in range(30):
        task = (
            id_tasks[torch.randint(0, 12, (1,), generator=g)].squeeze(0)
            if torch.rand(1, generator=g) < 0.5
            else torch.randint(0, p, (2,), generator=g)
        )
        xy = torch.randint(0, p, (2, 2), generator=g)
        z = (xy @ task) % p
        q = torch.randint(0, p, (2,), generator=g)
        pred, n = bayes_id(xy, z, q, id_tasks, p)
        cons = [
            t
            for t in id_tasks.tolist()
            if all((t[0] * x + t[1] * y) % p == zz for (x, y), zz in zip(xy.tolist(), z.tolist()))
        ]
        assert int(n) == len(cons)
        if cons:
            votes = [sum((t[0] * q[0] + t[1] * q[1]) % p == v for t in cons) for v in range(p)]
            assert int(pred) == max(range(p), key=lambda v: (votes[v], -v))
        else:
            assert int(pred) == -1


def _accuracy(fn, p, k, contexts, seed=0):
    """Mean accuracy over all p² queries of ``fn`` for random tasks and k distinct random context inputs."""
    g = torch.Generator().manual_seed(seed)
    grid = _grid(p)
    task = torch.randint(0, p, (contexts, 1, 2), generator=g)
    idx = torch.rand(contexts, p * p, generator=g).argsort(dim=-1)[:, :k]
    ctx = grid[idx][:, None]  # [C, 1, k, 2]
    z = (ctx * task[:, :, None]).sum(-1) % p  # [C, 1, k]
    truth = (grid[None] * task).sum(-1) % p  # [C, p², ]
    pred = fn(ctx.expand(-1, p * p, -1, -1), z.expand(-1, p * p, -1), grid[None].expand(contexts, -1, -1), p)
    return (pred == truth).double().mean().item()


@pytest.mark.parametrize("k, paper", [(1, 0.034), (13, 0.360), (31, 0.657)])
def test_ratio_matching_accuracy_matches_the_paper_reference_table(k, paper):
    # PAPER.md §3 (Fig. 5 reference curves, p = 29, random distinct contexts): RM 3.4 %, 36.0 %, 65.7 %
    assert ratio_matching_expected_accuracy(29, k, n_var=2) == pytest.approx(paper, abs=0.0015)
    assert _accuracy(ratio_matching, 29, k, contexts=300) == pytest.approx(paper, abs=0.006)


@pytest.mark.parametrize("k, paper", [(1, 0.034), (2, 0.968), (3, 0.998)])
def test_modular_regression_accuracy_matches_the_paper_reference_table(k, paper):
    assert _accuracy(modular_regression, 29, k, contexts=1500) == pytest.approx(paper, abs=0.006)
