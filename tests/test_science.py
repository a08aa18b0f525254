"""Science checks that train for minutes; run with `make test-slow` (excluded from `make test`)."""

import pytest

from modicl.config import preset
from modicl.train import train


@pytest.mark.slow
def test_quick_preset_generalises_out_of_distribution(tmp_path):
    summary = train(preset("quick"), tmp_path / "quick", progress=False)
    final = summary["final"]  # docs/quick-preset.md: 0.72 / 0.59 on this machine (1 thread, seed 2)
    assert final["ood_train"]["acc_last"] >= 0.6  # unseen tasks, training inputs (chance 1/7)
    assert final["ood_test"]["acc_last"] >= 0.4  # unseen tasks, held-out inputs
    assert summary["phase"] == "ood_generalization"


@pytest.mark.slow
def test_quick_memorize_preset_memorises_without_ood_skill(tmp_path):
    summary = train(preset("quick-memorize"), tmp_path / "mem", progress=False)
    final = summary["final"]
    assert final["id_train"]["acc_last"] >= 0.8
    assert final["ood_train"]["acc_last"] < 0.3 and summary["phase"] in ("id_memorization", "id_generalization")
