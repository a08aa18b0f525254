import dataclasses

import pytest

from modicl.config import (
    ConfigError,
    RunConfig,
    Seeds,
    TrainConfig,
    from_dict,
    run_seeds,
    to_dict,
    validate,
)
from modicl.hashing import config_hash
from modicl.presets import preset


def _cfg(task=None, model=None, train=None):
    base = preset("quick")
    return RunConfig(
        task=dataclasses.replace(base.task, **(task or {})),
        model=dataclasses.replace(base.model, **(model or {})),
        train=dataclasses.replace(base.train, **(train or {})),
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"task": {"p": 9}}, "task.p = 9 is not prime"),
        ({"task": {"n_id": 49}}, "task.n_id = 49 must be in"),
        ({"task": {"n_id": 30}}, "not a multiple of 4"),
        ({"task": {"alpha": 1.0}}, "strictly between 0 and 1"),
        ({"task": {"alpha": 0.0}}, "strictly between 0 and 1"),
        ({"task": {"n_ctx": 0}}, "task.n_ctx = 0 must be"),
        ({"train": {"batch_size": 70}}, "use 64 or 96"),
        ({"model": {"n_heads": 3}}, "not divisible by model.n_heads = 3"),
        ({"train": {"decay_steps": 5801}}, r"train.decay_steps \(5801\) must be between 0 and .* \(5800\)"),
        ({"train": {"decay_steps": -1}}, "train.decay_steps"),
        ({"train": {"decay_steps": 100, "final_lr_ratio": 1.0}}, "has no effect with train.final_lr_ratio = 1"),
    ],
)
def test_configs_that_cannot_work_raise_one_line_errors(kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate(_cfg(**kw))
    assert "\n" not in str(e.value)


def test_presets_validate_and_paper_preset_matches_paper_section_2_3():
    for name in ("quick", "quick-depth2", "quick-memorize", "paper"):
        validate(preset(name))
    p = preset("paper")
    assert (p.task.p, p.task.n_ctx, p.model.d_model, p.model.n_heads, p.train.batch_size) == (29, 32, 512, 4, 1024)
    assert (p.train.lr, p.train.weight_decay, p.train.warmup_steps, p.train.steps) == (1.5e-4, 2.0, 10_000, 200_000)
    assert (p.train.beta1, p.train.beta2, p.train.warmup_start, p.train.final_lr_ratio) == (0.9, 0.98, 0.01, 0.1)
    assert preset("quick-memorize").task.n_id == 8
    d2 = preset("quick-depth2")  # docs/quick-preset.md, session 4: depth 2, d_model 64, a constant lr after warmup
    assert (d2.model.n_layers, d2.model.d_model, d2.train.final_lr_ratio, d2.seed) == (2, 64, 1.0, 3)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset("nope")


def test_config_roundtrips_through_dict():
    cfg = preset("quick")
    assert from_dict(to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        from_dict({**to_dict(cfg), "task": {"p": 7, "bogus": 1}})


def test_fields_added_later_keep_old_run_directory_names_at_their_default():
    # hashes from before train.decay_steps existed (sessions 1-4 run directories are named by them)
    assert config_hash(preset("quick")) == "77e1a91a5843"
    assert config_hash(preset("quick-depth2")) == "cfec5179b103"
    wsd = preset("quick-depth2")
    wsd = dataclasses.replace(wsd, train=dataclasses.replace(wsd.train, decay_steps=2000, final_lr_ratio=0.0))
    assert config_hash(wsd) != "cfec5179b103"
    assert from_dict(to_dict(wsd)) == wsd
    # the o.o.d. validation split and the separate seeds keep names at their defaults, not elsewhere
    q = preset("quick")
    assert config_hash(dataclasses.replace(q, task_seed=q.seed)) != config_hash(q)
    assert config_hash(dataclasses.replace(q, task=dataclasses.replace(q.task, ood_val_fraction=0.3))) != config_hash(q)


def test_task_init_and_data_seeds_follow_seed_unless_set():
    q = preset("quick")
    assert run_seeds(q) == Seeds(task=2, init=2, data=2)
    assert run_seeds(dataclasses.replace(q, init_seed=7)) == Seeds(task=2, init=7, data=2)
    with pytest.raises(ConfigError, match="data_seed"):
        validate(dataclasses.replace(q, data_seed=-1))


def test_parts_name_every_nested_config_and_execution_fields_leave_what_is_computed_alone():
    from modicl.config import PARTS
    from modicl.fields import EXECUTION_FIELDS, without_execution

    assert {name: type(getattr(RunConfig(), name)) for name in PARTS} == PARTS
    assert not any(
        dataclasses.is_dataclass(getattr(RunConfig(), f.name))
        for f in dataclasses.fields(RunConfig)
        if f.name not in PARTS
    )
    cfg = preset("quick")
    assert from_dict(to_dict(cfg)) == cfg
    moved = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, device="cpu", threads=7, compile="on", compile_mode="max-autotune")
    )
    plain = without_execution(moved)
    assert plain == without_execution(cfg)
    assert all(getattr(plain.train, f) == getattr(TrainConfig(), f) for f in EXECUTION_FIELDS)
    assert dataclasses.replace(plain.train, **{f: getattr(cfg.train, f) for f in EXECUTION_FIELDS}) == cfg.train


def test_every_config_field_has_one_role_and_the_roles_reproduce_the_rules_they_replaced():
    from modicl.fields import EXECUTION_FIELDS, FIELD_ROLES, field_names

    # a new field without a role fails here: add it to FIELD_ROLES
    assert sorted(field_names()) == sorted(FIELD_ROLES)
    assert EXECUTION_FIELDS == ("compile", "compile_mode", "device", "threads", "keep_checkpoints")
    # the fields ensembles may differ in, as the explicit list had them (task data, seeds, threshold, threads)
    assert {n for n, r in FIELD_ROLES.items() if r.member} == {
        "task.n_id",
        "task.alpha",
        "task.rule",
        "task.n_ood",
        "task.split_seed",
        "task.shared_inputs",
        "task.replacement",
        "task.ood_val_fraction",
        "seed",
        "task_seed",
        "init_seed",
        "data_seed",
        "phase_threshold",
        "train.threads",
    }
    # branches change training settings only, never the optimizer
    assert {n for n, r in FIELD_ROLES.items() if r.branch} == {n for n in FIELD_ROLES if n.startswith("train.")} - {
        "train.optimizer",
        *(f"train.{f}" for f in EXECUTION_FIELDS),
    }
    assert all(not r.execution or n.startswith("train.") for n, r in FIELD_ROLES.items())


def test_one_seed_limit_for_config_fields_and_flags_and_torch_takes_it_with_offsets():
    import torch

    from modicl.config import SEED_MAX, check_seed

    check_seed(SEED_MAX, "--seed")
    validate(dataclasses.replace(preset("quick"), seed=SEED_MAX))
    with pytest.raises(ConfigError, match="--seed .* 2\\*\\*63 - 1"):
        check_seed(SEED_MAX + 1, "--seed")
    with pytest.raises(ConfigError, match="2\\*\\*63 - 1"):
        validate(dataclasses.replace(preset("quick"), seed=SEED_MAX + 1))
    torch.Generator().manual_seed(SEED_MAX + 2)  # the analyses seed generators with small offsets added
