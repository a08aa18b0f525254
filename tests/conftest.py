"""Shared fixtures: a tiny config that trains in seconds on a CPU; and the shape checks of the test suite."""

import dataclasses
import inspect
import types

import pytest
from jaxtyping import install_import_hook

# The jaxtyping shape annotations of these modules are checked by beartype on every call while the tests run
# (production runs never check them). The hook must be in place before anything imports the modules. An int
# passes for a float annotation (PEP 484's numeric tower), as it does for mypy.
SHAPE_CHECKED = (
    "modicl.data",
    "modicl.algorithms",
    "modicl.analysis.measures",
    "modicl.metrics",
    "modicl.circuits",
    "modicl.model",
    "modicl.steps",
)
install_import_hook(SHAPE_CHECKED, "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")

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


def _unchecked(fn):
    """``fn`` without the shape-check wrappers the import hook put around it (jaxtyping's and beartype's)."""
    while hasattr(fn, "__wrapped__") and any(k in fn.__code__.co_filename for k in ("jaxtyping", "beartype")):
        fn = fn.__wrapped__
    return fn


def without_shape_checks(monkeypatch, *modules: types.ModuleType) -> None:
    """Put back the plain functions and methods of ``modules`` (and the functions they imported), for tests of
    ``torch.compile``, which cannot trace the checks' wrappers and would count each as a graph break."""
    for module in modules:
        for name, obj in list(vars(module).items()):
            if inspect.isfunction(obj):
                monkeypatch.setattr(module, name, _unchecked(obj))
            elif inspect.isclass(obj) and obj.__module__ == module.__name__:
                for attr, member in list(vars(obj).items()):
                    if isinstance(member, (staticmethod, classmethod)):
                        monkeypatch.setattr(obj, attr, type(member)(_unchecked(member.__func__)))
                    elif inspect.isfunction(member):
                        monkeypatch.setattr(obj, attr, _unchecked(member))
