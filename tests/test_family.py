import itertools

import numpy as np
import pytest
import torch

from modicl import family
from modicl.algorithms import span_scan
from modicl.config import ConfigError, RunConfig, TaskConfig, config_hash, validate
from modicl.data import sample_sequences, z_logits, z_targets


def test_the_paper_family_lays_out_x_y_z_triples():
    assert family.example_width(2) == 3
    assert family.sequence_length(32, 2) == 96 and family.input_length(32, 2) == 95  # PAPER.md §1.3
    pos = np.arange(9)
    assert pos[family.label_slice(2)].tolist() == [2, 5, 8]  # z_j at 3j + 2
    assert pos[family.query_slice(2)].tolist() == [1, 4, 7]  # predicted from the y_j token
    assert family.example_positions(1, 2) == [3, 4, 5]


def test_vectors_are_numbered_lexicographically_as_the_official_pairs():
    idx = np.arange(49)
    assert np.array_equal(family.vectors(idx, 7, 2), np.stack([idx // 7, idx % 7], axis=1))
    assert family.all_vectors(3, 2).tolist() == [list(t) for t in itertools.product(range(3), repeat=2)]
    assert np.array_equal(family.index_of(family.all_vectors(5, 2), 5), np.arange(25))


def test_the_complement_is_every_other_task_in_order():
    tasks = np.array([[0, 1], [2, 2], [1, 0]])
    rest = family.complement(tasks, 3, 2).tolist()
    assert rest == [[a, b] for a in range(3) for b in range(3) if [a, b] not in tasks.tolist()]


def test_the_input_split_matches_the_official_sizes():
    sizes = [len(family.input_split(29, a, 0)[0]) for a in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    assert sizes == [168, 252, 336, 420, 505, 589, 673]  # PAPER.md §1.5


def test_layout_helpers_read_the_family():
    tasks = torch.tensor([[2, 3]])
    tok = sample_sequences(tasks, torch.tensor([[1, 4], [5, 0]]), 2, 4, 7, torch.Generator().manual_seed(0))
    assert tok.shape == (2, 12)
    x, z = family.examples(tok, 2)
    assert torch.equal(z, z_targets(tok)) and torch.equal(z, (2 * x[..., 0] + 3 * x[..., 1]) % 7)
    logits = torch.arange(11).view(1, 11, 1).expand(1, 11, 2)
    assert z_logits(logits)[0, :, 0].tolist() == [1, 4, 7, 10]


def _rank_mod_p(rows: list[list[int]], p: int) -> int:
    """Rank over Z_p by brute force: the size of the span, as a power of p."""
    if not rows:
        return 0
    span = {tuple((sum(c * r[i] for c, r in zip(cs, rows))) % p for i in range(len(rows[0])))
            for cs in itertools.product(range(p), repeat=len(rows))}
    return round(np.log(len(span)) / np.log(p))


@pytest.mark.parametrize("n_var", [2])
def test_span_scan_matches_brute_force_ranks(n_var):
    p, k = 3, 5
    g = torch.Generator().manual_seed(n_var)
    xs = torch.randint(0, p, (40, k, n_var), generator=g)
    xs[:5] = 0  # some all-zero contexts
    xs[5:10, :, 1:] = 0  # some contexts on one line
    w = torch.randint(0, p, (40, 1, n_var), generator=g)
    z = family.task_labels(xs, w, p)
    in_span, implied, _, _ = span_scan(xs, z, p)
    for b in range(40):
        rows = xs[b].tolist()
        for j in range(k):
            want = _rank_mod_p(rows[: j + 1], p) == _rank_mod_p(rows[:j], p)
            assert bool(in_span[b, j]) == want
            assert int(implied[b, j]) == (int(z[b, j]) if want else -1)


def test_n_var_is_a_task_field_that_keeps_every_existing_run_name():
    cfg = RunConfig()
    assert cfg.task.n_var == 2
    import dataclasses

    d = dataclasses.asdict(cfg)
    assert "n_var" in d["task"]
    assert config_hash(cfg) == "9ccaba1676a5"  # the paper preset's name before the field existed


def test_an_unsupported_n_var_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match="task.n_var = 1 is not supported"):
        validate(RunConfig(task=TaskConfig(n_var=1)))
