import numpy as np
import pytest

from modicl.config import ConfigError, TaskConfig
from modicl.tasks import TaskSet, input_split, make_task_set, random_tasks, rectangular_tasks


def test_split_sizes_for_p29_match_paper_list():
    sizes = [len(input_split(29, a, 0, n_var=2)[0]) for a in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    assert sizes == [168, 252, 336, 420, 505, 589, 673]


def test_split_partitions_all_pairs_and_is_seeded():
    train, test = input_split(7, 0.8, split_seed=0, n_var=2)
    allp = {tuple(r) for r in np.concatenate([train, test]).tolist()}
    assert allp == {(x, y) for x in range(7) for y in range(7)} and len(train) + len(test) == 49
    assert np.array_equal(input_split(7, 0.8, 0, n_var=2)[0], train)
    assert not np.array_equal(input_split(7, 0.8, 1, n_var=2)[0], train)


@pytest.mark.parametrize("rule", ["rectangular", "random"])
@pytest.mark.parametrize("p,n_id", [(7, 32), (11, 40), (29, 512)])
def test_validation_and_test_ood_tasks_disjoint_from_each_other_and_from_pretraining(rule, p, n_id):
    ts = make_task_set(TaskConfig(p=p, n_id=n_id, rule=rule, n_ood=256), seed=1)
    id_set = {tuple(t) for t in ts.id_tasks.tolist()}
    ood_set = {tuple(t) for t in ts.ood_tasks.tolist()}
    val_set = {tuple(t) for t in ts.val_tasks.tolist()}
    assert len(id_set) == n_id  # n_id counts all distinct pre-training tasks
    assert not id_set & ood_set and not id_set & val_set and not val_set & ood_set
    held_out = p * p - n_id
    assert len(val_set) == len(ts.val_tasks) == min(256, held_out // 2)  # half of the held-out tasks by default
    assert len(ood_set) == len(ts.ood_tasks) == min(256, held_out - held_out // 2)
    assert all(0 <= v < p for t in id_set | ood_set | val_set for v in t)


def test_task_set_round_trips_through_json_with_its_validation_tasks():
    ts = make_task_set(TaskConfig(p=7, n_id=32, n_ood=256), seed=4)
    back = TaskSet.from_json(ts.to_json())
    for k in ("id_tasks", "ood_tasks", "val_tasks", "train_pairs", "test_pairs"):
        assert np.array_equal(getattr(back, k), getattr(ts, k)), k


def test_too_few_held_out_tasks_for_validation_and_test_is_a_config_error():
    with pytest.raises(ConfigError, match="ood_val_fraction"):
        make_task_set(TaskConfig(p=5, n_id=24, rule="random", n_ood=256), seed=1)  # 1 held-out task


def test_rectangular_sets_really_are_rectangles():
    tasks = rectangular_tasks(29, 64, np.random.default_rng(5))
    for (a, b), (a2, y2), (x2, b2), (x3, y3) in tasks.reshape(-1, 4, 2).tolist():
        assert a2 == a and b2 == b and x3 == x2 and y3 == y2
        assert x2 not in (a, b) and y2 not in (a, b, x2)
        # opposite corners sum to the same vector: (a,b) + (x',y') = (a,y') + (x',b)
        assert (a + x3, b + y3) == (a2 + x2, y2 + b2)


def test_rectangular_rule_rejects_n_id_not_multiple_of_4():
    with pytest.raises(ConfigError, match="multiple of 4"):
        rectangular_tasks(7, 10, np.random.default_rng(0))


def test_random_tasks_are_distinct():
    t = random_tasks(7, 40, np.random.default_rng(0), n_var=2)
    assert len({tuple(r) for r in t.tolist()}) == 40


def test_task_set_is_reproducible_and_roundtrips_through_json():
    cfg = TaskConfig(p=7, n_id=32, alpha=0.8)
    a, b = make_task_set(cfg, 1), make_task_set(cfg, 1)
    assert np.array_equal(a.id_tasks, b.id_tasks) and np.array_equal(a.ood_tasks, b.ood_tasks)
    back = TaskSet.from_json(a.to_json())
    for k in ("id_tasks", "ood_tasks", "train_pairs", "test_pairs"):
        assert np.array_equal(getattr(back, k), getattr(a, k))


def test_non_prime_modulus_is_rejected():
    with pytest.raises(ConfigError, match="not prime"):
        make_task_set(TaskConfig(p=9, n_id=8), 1)


def test_task_labels_apply_the_rule_to_arrays_and_tensors_alike():
    import torch

    from modicl.family import task_labels

    xy = np.array([[1, 2], [3, 4], [6, 6]])
    ab = np.array([2, 5])
    want = np.array([(2 * 1 + 5 * 2) % 7, (2 * 3 + 5 * 4) % 7, (2 * 6 + 5 * 6) % 7])
    assert (task_labels(xy, ab, 7) == want).all()
    assert torch.equal(task_labels(torch.as_tensor(xy), torch.as_tensor(ab), 7), torch.as_tensor(want))
    # one row of inputs against several tasks by broadcasting
    tasks = np.array([[1, 0], [0, 1]])
    assert task_labels(xy[:, None], tasks[None], 7).tolist() == [[1, 2], [3, 4], [6, 6]]
