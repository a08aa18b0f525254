"""The public API in ``modicl/__init__.py``: light to import, each name the object of its module, and
``modicl.evaluate`` the numbers ``modicl eval`` writes."""

import json
import subprocess
import sys

import pytest
from conftest import tiny_config

import modicl
from modicl.cli import main
from modicl.config import ConfigError

OWNERS = {
    "train": "modicl.training",
    "evaluate": "modicl.evaluation",
    "load_checkpoint": "modicl.rundir",
    "preset": "modicl.presets",
    "run_sweep": "modicl.sweep.local",
    "SweepSpec": "modicl.sweep.spec",
    "load_spec": "modicl.sweep.spec",
}


def test_import_modicl_loads_no_torch_until_a_name_is_used():
    code = (
        "import sys, modicl; before = 'torch' in sys.modules; modicl.preset('quick'); "
        "light = 'torch' in sys.modules; modicl.train; print(before, light, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_every_public_name_is_its_modules_object_even_after_its_module_is_imported():
    import importlib

    import modicl.training  # importing the training module leaves modicl.train the function

    assert sorted(modicl.__all__) == sorted([*OWNERS, "__version__"])
    for name, owner in OWNERS.items():
        obj = getattr(modicl, name)
        assert obj.__module__ == owner, name
        attr = "evaluate_checkpoint" if name == "evaluate" else name
        assert obj is getattr(importlib.import_module(owner), attr)
    assert callable(modicl.train) and set(dir(modicl)) == set(OWNERS) | {"__version__"}  # no helpers listed
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modicl.nope  # noqa: B018


def test_evaluate_gives_what_modicl_eval_writes_and_checks_its_arguments(tmp_path):
    run = tmp_path / "r"
    modicl.train(tiny_config(steps=20, eval_every=20), run, progress=False)
    assert main(["eval", str(run), "--checkpoint", "last", "--sequences", "24", "--seed", "5"]) == 0
    written = json.loads((run / "eval" / "last.json").read_text())
    res = json.loads(json.dumps(modicl.evaluate(run, "last", sequences=24, seed=5)))  # tuples → lists
    assert res == written
    assert res["step"] == 20 and res["sequences_per_set"]["ood_test"] == res["ood_test"]["n_sequences"] >= 24
    other = modicl.evaluate(run, "last", sequences=24, seed=6)
    assert other["ood_test"]["kshot"] != res["ood_test"]["kshot"]  # the seed draws the sequences
    with pytest.raises(ConfigError, match=r"sequences = 0 must be ≥ 1"):
        modicl.evaluate(run, "last", sequences=0)
    with pytest.raises(ConfigError, match=r"seed = -1 must be"):
        modicl.evaluate(run, "last", seed=-1)
