import pytest
import torch

from modicl.data import model_inputs, sample_sequences, z_logits, z_targets


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_hand_worked_sequence_layout():
    # one task (2, 3) mod 5, one pair (4, 1): z = 2·4 + 3·1 = 11 ≡ 1
    tok = sample_sequences(torch.tensor([[2, 3]]), torch.tensor([[4, 1]]), 1, 3, 5, _gen())
    assert tok.tolist() == [[4, 1, 1, 4, 1, 1, 4, 1, 1]]
    assert model_inputs(tok).tolist() == [[4, 1, 1, 4, 1, 1, 4, 1]]
    assert z_targets(tok, n_var=2).tolist() == [[1, 1, 1]]
    logits = torch.arange(8.0).view(1, 8, 1)  # position index as the "logit"
    assert z_logits(logits, n_var=2).flatten().tolist() == [1.0, 4.0, 7.0]  # the y positions predict z


def test_every_z_is_a_x_plus_b_y_mod_p_and_batches_are_task_major():
    p = 11
    tasks = torch.tensor([[1, 2], [3, 4], [0, 7], [10, 10]])
    pairs = torch.tensor([(x, y) for x in range(p) for y in range(p)])
    for shared in (True, False):
        tok = sample_sequences(tasks, pairs, 5, 8, p, _gen(1), shared_inputs=shared)
        assert tok.shape == (20, 24)
        ex = tok.view(4, 5, 8, 3)
        a, b = tasks[:, 0].view(4, 1, 1), tasks[:, 1].view(4, 1, 1)
        assert torch.equal(ex[..., 2], (a * ex[..., 0] + b * ex[..., 1]) % p)


def test_shared_inputs_give_every_task_the_same_xy_stream():
    tasks = torch.tensor([[1, 2], [3, 4], [5, 6]])
    pairs = torch.tensor([(x, y) for x in range(7) for y in range(7)])
    ex = sample_sequences(tasks, pairs, 4, 6, 7, _gen(), shared_inputs=True).view(3, 4, 6, 3)
    assert torch.equal(ex[0, ..., :2], ex[1, ..., :2]) and torch.equal(ex[0, ..., :2], ex[2, ..., :2])
    ex = sample_sequences(tasks, pairs, 4, 6, 7, _gen(), shared_inputs=False).view(3, 4, 6, 3)
    assert not torch.equal(ex[0, ..., :2], ex[1, ..., :2])


def test_inputs_come_only_from_the_given_pairs_and_without_replacement_are_distinct():
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 0], [1, 1]])
    tok = sample_sequences(torch.tensor([[1, 1]]), pairs, 50, 5, 7, _gen(), replacement=False)
    xy = tok.view(50, 5, 3)[..., :2]
    allowed = {tuple(r) for r in pairs.tolist()}
    for seq in xy.tolist():
        assert {tuple(r) for r in seq} == allowed  # 5 distinct draws of 5 pairs = all of them


def test_same_generator_state_gives_same_batch():
    tasks, pairs = torch.tensor([[1, 2]]), torch.tensor([(x, y) for x in range(5) for y in range(5)])
    assert torch.equal(
        sample_sequences(tasks, pairs, 3, 4, 5, _gen(9)), sample_sequences(tasks, pairs, 3, 4, 5, _gen(9))
    )


def test_without_replacement_longer_than_the_pool_uses_every_pair_before_any_repeats():
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    tok = sample_sequences(torch.tensor([[1, 1]]), pairs, 20, 8, 7, _gen(2), replacement=False)
    xy = tok.view(20, 8, 3)[..., :2].tolist()
    allowed = {tuple(r) for r in pairs.tolist()}
    for seq in xy:
        seq = [tuple(r) for r in seq]
        assert set(seq[:3]) == allowed and set(seq[3:6]) == allowed and set(seq[6:]) < allowed
        assert len(set(seq[6:])) == 2  # the third pass is cut short, still without a repeat inside it


def test_bursty_sequences_use_only_their_own_k_pairs_and_share_zero_leaves_the_stream_unchanged():
    p = 11
    tasks = torch.tensor([[1, 2], [3, 4]])
    pairs = torch.tensor([(x, y) for x in range(p) for y in range(p)])
    tok = sample_sequences(tasks, pairs, 40, 16, p, _gen(3), shared_inputs=False, burst=(3, 1.0))
    xy = tok.view(80, 16, 3)[..., :2].tolist()
    sizes = [len({tuple(r) for r in seq}) for seq in xy]
    assert max(sizes) <= 3 and min(sizes) >= 1
    assert len({frozenset(tuple(r) for r in seq) for seq in xy}) > 40  # every sequence has its own subset
    plain = sample_sequences(tasks, pairs, 40, 16, p, _gen(3), shared_inputs=False)
    assert torch.equal(sample_sequences(tasks, pairs, 40, 16, p, _gen(3), shared_inputs=False, burst=(3, 0.0)), plain)
    # a share of one half: about half the sequences are bursty (16 draws from 121 pairs almost never ≤ 3 distinct)
    tok = sample_sequences(tasks, pairs, 200, 16, p, _gen(4), shared_inputs=False, burst=(3, 0.5))
    few = sum(len({tuple(r) for r in seq}) <= 3 for seq in tok.view(400, 16, 3)[..., :2].tolist())
    assert 160 <= few <= 240


def test_shape_annotations_are_checked_in_the_tests_and_every_tensor_function_has_them():
    import inspect

    import jaxtyping
    from conftest import SHAPE_CHECKED

    from modicl import algorithms, circuits, data, metrics, model, steps
    from modicl.analysis import measures

    with pytest.raises(jaxtyping.TypeCheckError, match="tokens"):
        data.model_inputs(torch.zeros(4, dtype=torch.int64))  # 1-D: not [batch, seq]
    with pytest.raises(jaxtyping.TypeCheckError, match="query"):  # the query's n_var differs from the context's
        algorithms.ratio_matching(
            torch.zeros(3, 4, 2, dtype=torch.int64),
            torch.zeros(3, 4, dtype=torch.int64),
            torch.zeros(3, 3, dtype=torch.int64),
            7,
        )
    assert data.z_targets(torch.zeros(2, 9, dtype=torch.int64), n_var=2).shape == (2, 3)
    with pytest.raises(jaxtyping.TypeCheckError, match="tokens"):  # float tokens: the model embeds int64 ids
        model.Transformer(model.ModelConfig(d_model=8, n_layers=1, n_heads=2), 5, 8)(torch.zeros(2, 4))
    with pytest.raises(jaxtyping.TypeCheckError, match="cos"):  # tables of another head dim than x's
        cos, sin = model.rope_tables(8, 4)
        model.apply_rope(torch.zeros(2, 8, 6), cos, sin[:, :1])
    public = []
    for module in (algorithms, data, measures, metrics, circuits, model, steps):
        assert module.__name__ in SHAPE_CHECKED
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                public.append((f"{module.__name__}.{name}", obj))
            elif inspect.isclass(obj):  # the public methods of public classes
                methods = inspect.getmembers(obj, inspect.isfunction)
                public += [(f"{module.__name__}.{name}.{m}", f) for m, f in methods if m == "__call__" or m[0] != "_"]
    for qualname, fn in public:
        params = inspect.signature(fn).parameters.values()  # annotations are strings (postponed evaluation)
        untyped = [a.name for a in params if a.annotation in ("Tensor", torch.Tensor)]
        assert untyped == [], f"{qualname}: tensor arguments without a shape annotation {untyped}"
