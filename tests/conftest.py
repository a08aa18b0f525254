"""Shared fixtures: a tiny config that trains in seconds on a CPU; and the shape checks of the test suite."""

import dataclasses

import pytest
from jaxtyping import install_import_hook

# The jaxtyping shape annotations of these modules are checked by beartype on every call while the tests run
# (production runs never check them). The hook must be in place before anything imports the modules.
SHAPE_CHECKED = ("modicl.data", "modicl.algorithms", "modicl.analysis.measures")
install_import_hook(SHAPE_CHECKED, "beartype.beartype")

from modicl.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402


def tiny_config(**train_overrides) -> RunConfig:
    train = TrainConfig(
        steps=60,
        batch_size=16,
        lr=3e-3,
        weight_decay=0.1,
        warmup_steps=10,
        eval_every=20,
        eval_sequences=32,
        eval_batch_size=64,
        dtype="fp32",
        device="cpu",
    )
    return RunConfig(
        task=TaskConfig(p=5, n_id=4, alpha=0.8, n_ctx=4),
        model=ModelConfig(d_model=32, n_layers=1, n_heads=2),
        train=dataclasses.replace(train, **train_overrides),
        seed=3,
    )


@pytest.fixture
def tiny():
    return tiny_config()
