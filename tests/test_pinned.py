"""Pinned behaviour: run-directory names and the numbers of short runs, recorded from the code as it was
before a refactor, so that any change of what modicl computes or where it writes fails here.

Two kinds of pins:

* names: the config hash of every preset and the directory name (point hash) of every point of every
  built-in sweep. These are machine-independent and always checked exactly.
* numbers: a 20-step run of each CPU preset (fp32, one thread, evaluation every 10 steps on 64
  sequences per set), then ``modicl eval`` and ``modicl analyze`` on the quick-depth2 run's last checkpoint.
  A few readable values are pinned to 1e-6, and digests of metrics.jsonl (without wall times),
  summary.json (without timings), eval/last.json and analysis.json pin every bit. Floating-point
  results depend on the CPU's matmul kernels, so the exact checks hold on the numerics they were
  recorded with (:data:`RECORDED_ON`); elsewhere the readable values are checked loosely and the
  digests are skipped.

To re-record after an intended change of behaviour: ``python tests/test_pinned.py`` prints the
current values in the shape of the constants below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from modicl.config import RunConfig
from modicl.hashing import config_hash
from modicl.presets import PRESETS, preset
from modicl.sweep import BUILTIN, expand

CPU_PRESETS = ("quick", "quick-depth2", "quick-memorize")
SETS = ("id_train", "id_test", "ood_train", "ood_test", "ood_val")
STEPS = (0, 10, 20)
RECORDED_ON = {"cpu_kind": "avx512_bf16", "torch": "2.13.0+cpu"}


def short(name: str) -> RunConfig:
    """The preset ``name`` cut to 20 steps with small evaluations, in fp32 on one CPU thread."""
    cfg = preset(name)
    tc = dataclasses.replace(
        cfg.train, steps=20, eval_every=10, eval_sequences=64, eval_batch_size=64, dtype="fp32", device="cpu", threads=1
    )
    return dataclasses.replace(cfg, train=tc)


# Keys added after the pins were recorded, each pinned by its own tests (test_metrics: the algorithm
# fingerprint); the digests leave them out so that they still prove every earlier number unchanged.
ADDED_KEYS = ("fingerprint", "fingerprint_kshot", "algorithm")


def _without_added(obj):
    if isinstance(obj, dict):
        return {k: _without_added(v) for k, v in obj.items() if k not in ADDED_KEYS}
    if isinstance(obj, list):
        return [_without_added(v) for v in obj]
    return obj


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(_without_added(obj), sort_keys=True).encode()).hexdigest()[:16]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_digest(run_dir: Path) -> str:
    """Digest of metrics.jsonl without the wall times."""
    return _digest([{k: v for k, v in r.items() if k != "wall_s"} for r in _rows(run_dir)])


def summary_digest(run_dir: Path) -> str:
    """Digest of summary.json without its timings."""
    s = json.loads((run_dir / "summary.json").read_text())
    return _digest({k: v for k, v in s.items() if k not in ("wall_s", "train_s", "tokens_per_s")})


def key_values(run_dir: Path) -> dict:
    """step → [train_loss, {set: [acc, acc_last_novel, loss]}] at the pinned steps."""
    out = {}
    for r in _rows(run_dir):
        if r["step"] in STEPS:
            out[str(r["step"])] = [
                r["train_loss"],
                {s: [r[s]["acc"], r[s]["acc_last_novel"], r[s]["loss"]] for s in SETS},
            ]
    return out


def run_files(run_dir: Path) -> list[str]:
    """The run directory's files, relative, sorted (the lock file aside)."""
    return sorted(str(f.relative_to(run_dir)) for f in run_dir.rglob("*") if f.is_file() and f.name != ".lock")


def eval_digest(run_dir: Path) -> str:
    return _digest(json.loads((run_dir / "eval" / "last.json").read_text()))


# kaleidoscope measures added after the analysis digest was recorded: pinned by their own digest, so the
# recorded one still covers exactly what it covered
_KALEIDOSCOPE_SPLITS = ("_z_heldout_vs_train", "_z_train")


def analysis_digest(run_dir: Path) -> str:
    res = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    res = {k: v for k, v in res.items() if k != "run_dir"}
    blocks = res["kaleidoscope"]["blocks"]
    res["kaleidoscope"]["blocks"] = {k: v for k, v in blocks.items() if not k.endswith(_KALEIDOSCOPE_SPLITS)}
    return _digest(res)


def kaleidoscope_split_digest(run_dir: Path) -> str:
    blocks = json.loads((run_dir / "analysis" / "analysis.json").read_text())["kaleidoscope"]["blocks"]
    return _digest({k: v for k, v in blocks.items() if k.endswith(_KALEIDOSCOPE_SPLITS)})


def exact_numerics() -> bool:
    """True on the numerics the pinned numbers were recorded with."""
    from modicl.runtime import cpu_kind

    return cpu_kind() == RECORDED_ON["cpu_kind"] and torch.__version__ == RECORDED_ON["torch"]


# ----------------------------------------------------------------------------------------- pinned values

PRESET_HASHES = {
    "paper": "9ccaba1676a5",
    "quick": "77e1a91a5843",
    "quick-memorize": "a85134b6b99a",
    "quick-depth2": "cfec5179b103",
    "bench": "cd9418796806",
    "quick-role": "3ce707206875",
    "quick-muon": "91489ad92a02",
    "quick-p11": "8180aa1a2556",
}

SWEEP_HASHES = {
    "phase-diagram": [
        "f5527de01358",
        "78d5785ef903",
        "02b67b41fe8f",
        "76ab7b83ab76",
        "4a8f52772618",
        "5422236f3b84",
        "53c98a90cacb",
        "c66d4933fa58",
        "3975a89950ba",
        "ae4ffc189589",
        "45fe33cf783d",
        "6e5f0f13c01e",
        "7a5306adb50b",
        "5c9ef12c5be9",
        "8daf9cf03a59",
        "cc0463cc0df0",
        "f0ba1915d6e0",
        "24b908477f18",
        "67a7f4ae6478",
        "229208bba2d8",
        "87aa1e13772b",
        "b373f7bb705d",
        "cd20775ff49d",
        "0cba594b7397",
        "f1dfcaa64ba1",
        "1f5464ff3a58",
        "9e114de5dfb4",
        "02e4dc407a61",
        "bcdf16a36c8e",
        "aa9af4f214cd",
        "0d053d00c78f",
        "69fcd5150e86",
        "f7b639b76cee",
        "d2ea73cfe76d",
        "724a18cd445a",
        "ea9bedad5219",
        "096cc56b056a",
        "8f69edccb5f9",
        "13880b674fd8",
        "8c53b2084a76",
        "319c48b2237a",
        "143a983d636c",
        "1080eb695c1d",
        "0f1878745e1f",
        "bf79bde83549",
        "69faadabe8f2",
        "7e026dbfa0ff",
        "ec80b3b81dec",
        "652a68ff5c65",
    ],
    "quick-phase-diagram": [
        "0ace4cd33832",
        "4acfa61e61ed",
        "d01595c9eacd",
        "3711f74e5924",
        "f3e82cf91544",
        "4401a7b6c95d",
        "477a1391c835",
        "c9b2b374c5c2",
        "777787c82558",
        "39a42842c02b",
        "a8b9fb9376e5",
        "cd735f898bda",
        "6601d7478c9e",
        "2592f646e8c3",
        "42ce3962215c",
        "a1ed520459b9",
        "d819b142b75b",
        "fc1c437666c8",
        "3d1e2a57258a",
        "0238cb98ecb5",
        "7020819ab6c7",
        "cfbeb7ba79ef",
        "91c04ac1a585",
        "e1263004e436",
        "7868232fb293",
        "392d3acfe2b4",
        "60271bb3b06e",
        "25ef5fc48744",
        "b93900d469f5",
        "354596339616",
        "1ccbfc79e265",
        "420ecd4836fb",
        "a5432da60ad5",
        "63194e0bdef2",
        "54f5f9092f63",
        "0dd89cca9c34",
    ],
    "quick-phase-diagram-d4": [
        "873ce23fcd5e",
        "e6de9b7fd46f",
        "9cd12b2c3de1",
        "3fc9b02ef48c",
        "c40e95d15729",
        "bd6d2c454618",
        "9fd3f9e60d05",
        "565aabff452a",
        "ed1de76a15fa",
        "3da08d951ce2",
        "89c5b859b871",
        "a7e363be981d",
    ],
    "demo": ["f134d197c36d", "48810b650479"],
    "quick-depth": [
        "ea2f6e340123",
        "cd735f898bda",
        "ce5545bf8af2",
        "2ab678c53ffb",
        "8893e9eae361",
        "e1263004e436",
        "01588d80778c",
        "10e42c3b1a12",
        "5b716b8b932a",
        "0dd89cca9c34",
        "62deee403cf6",
        "a8ab05d68c83",
        "78ac19391994",
        "3edd40ff112e",
        "9c2dedb63f3f",
        "3fbfe1f8230c",
        "975a5b5e5c8c",
        "9c6a6825b3e3",
        "c84c88bd8dc6",
        "17dc2b559ec4",
    ],
    "depth": [
        "062868dd6f0d",
        "816023aeffec",
        "9f39b7a4a985",
        "dbf24bcdaa20",
        "d29ab6c9e0d5",
        "e7e39d3fa882",
        "a18c8c2be2c3",
        "5bfdcb27eded",
        "942abca2f532",
        "9ccaba1676a5",
        "f49169c3b1c5",
        "af03bfa739df",
        "b72e57154c0c",
        "b0012b533f8d",
        "82f4b4036a0b",
        "67a7f4ae6478",
        "1f5464ff3a58",
        "f7b639b76cee",
        "8c53b2084a76",
        "7e026dbfa0ff",
    ],
}

RUNS = {
    "quick": {
        "files": [
            "checkpoints/best_ood.json",
            "checkpoints/best_ood.safetensors",
            "checkpoints/last.json",
            "checkpoints/last.safetensors",
            "checkpoints/last.state.pt",
            "config.json",
            "metrics.jsonl",
            "plots/attention_progress.png",
            "plots/kshot.png",
            "plots/learning_curves.png",
            "sessions.jsonl",
            "summary.json",
            "tasks.json",
        ],
        "values": {
            "0": [
                None,
                {
                    "id_train": [0.1875, 0.32558139534883723, 1.9534130286192521],
                    "id_test": [0.171875, 0.09090909090909091, 1.9515100159915164],
                    "ood_train": [0.171875, 0.20930232558139536, 1.95572725435098],
                    "ood_test": [0.08940972222222222, 0.1111111111111111, 2.0306047263244786],
                    "ood_val": [0.1748046875, 0.2, 1.9551491682650521],
                },
            ],
            "10": [
                1.9515129327774048,
                {
                    "id_train": [0.1728515625, 0.17073170731707318, 1.9364016148028895],
                    "id_test": [0.1416015625, 0.3125, 1.94701504195109],
                    "ood_train": [0.12152777777777778, 0.16363636363636364, 1.952321105843617],
                    "ood_test": [0.11284722222222222, 0.125, 1.962456497984628],
                    "ood_val": [0.138671875, 0.18181818181818182, 1.9514543731929734],
                },
            ],
            "20": [
                1.9404958486557007,
                {
                    "id_train": [0.1572265625, 0.15, 1.9324895230820403],
                    "id_test": [0.130859375, 0.16666666666666666, 1.9550431398674846],
                    "ood_train": [0.12413194444444445, 0.11538461538461539, 1.9505344787612557],
                    "ood_test": [0.140625, 0.14285714285714285, 1.9676620941609144],
                    "ood_val": [0.2275390625, 0.2727272727272727, 1.9475911998888478],
                },
            ],
        },
        "digest": "5a5630c153322f7e",
        "summary": "ed0bfcdc7d85ee0d",
    },
    "quick-depth2": {
        "files": [
            "checkpoints/best_ood.json",
            "checkpoints/best_ood.safetensors",
            "checkpoints/last.json",
            "checkpoints/last.safetensors",
            "checkpoints/last.state.pt",
            "config.json",
            "metrics.jsonl",
            "plots/attention_progress.png",
            "plots/kshot.png",
            "plots/learning_curves.png",
            "sessions.jsonl",
            "summary.json",
            "tasks.json",
        ],
        "values": {
            "0": [
                None,
                {
                    "id_train": [0.1572265625, 0.15789473684210525, 1.9773216226603836],
                    "id_test": [0.1748046875, 0.0, 1.9625984645681456],
                    "ood_train": [0.14322916666666666, 0.1836734693877551, 1.9818554362282157],
                    "ood_test": [0.12586805555555555, 0.0625, 2.0071063240369162],
                    "ood_val": [0.12890625, 0.1111111111111111, 2.003312354790978],
                },
            ],
            "10": [
                1.9533761739730835,
                {
                    "id_train": [0.177734375, 0.15555555555555556, 1.939325719489716],
                    "id_test": [0.158203125, 0.18181818181818182, 1.9526754074031487],
                    "ood_train": [0.1362847222222222, 0.13725490196078433, 1.9574397715429466],
                    "ood_test": [0.11197916666666667, 0.3076923076923077, 1.9779590557639797],
                    "ood_val": [0.1123046875, 0.0, 1.9748623439809307],
                },
            ],
            "20": [
                1.9314696788787842,
                {
                    "id_train": [0.212890625, 0.22727272727272727, 1.9120317522902042],
                    "id_test": [0.1416015625, 0.08333333333333333, 1.956842659972608],
                    "ood_train": [0.13975694444444445, 0.1, 1.948934946416153],
                    "ood_test": [0.12586805555555555, 0.13043478260869565, 1.9859918341454532],
                    "ood_val": [0.1865234375, 0.16666666666666666, 1.9607493319781497],
                },
            ],
        },
        "digest": "7bcdea319c057a98",
        "summary": "1724c38d1735ab04",
    },
    "quick-memorize": {
        "files": [
            "checkpoints/best_ood.json",
            "checkpoints/best_ood.safetensors",
            "checkpoints/last.json",
            "checkpoints/last.safetensors",
            "checkpoints/last.state.pt",
            "config.json",
            "metrics.jsonl",
            "plots/attention_progress.png",
            "plots/kshot.png",
            "plots/learning_curves.png",
            "sessions.jsonl",
            "summary.json",
            "tasks.json",
        ],
        "values": {
            "0": [
                None,
                {
                    "id_train": [0.1552734375, 0.16279069767441862, 1.977393812034279],
                    "id_test": [0.130859375, 0.18181818181818182, 1.9615517185302451],
                    "ood_train": [0.16220238095238096, 0.19607843137254902, 1.9653105109575248],
                    "ood_test": [0.16889880952380953, 0.0, 1.973006755379694],
                    "ood_val": [0.14140625, 0.2, 1.978587242215872],
                },
            ],
            "10": [
                1.96029531955719,
                {
                    "id_train": [0.1650390625, 0.14634146341463414, 1.9451878385152668],
                    "id_test": [0.0810546875, 0.0, 1.9743384758476168],
                    "ood_train": [0.16592261904761904, 0.171875, 1.947648802506072],
                    "ood_test": [0.18377976190476192, 0.08333333333333333, 1.9394790287173929],
                    "ood_val": [0.1421875, 0.1111111111111111, 1.951237983442843],
                },
            ],
            "20": [
                1.946433663368225,
                {
                    "id_train": [0.1806640625, 0.05, 1.9342299054842442],
                    "id_test": [0.0673828125, 0.0, 1.993547123274766],
                    "ood_train": [0.13392857142857142, 0.18032786885245902, 1.9521370415708847],
                    "ood_test": [0.18154761904761904, 0.1, 1.9361405577510595],
                    "ood_val": [0.12421875, 0.15384615384615385, 1.9585955051705242],
                },
            ],
        },
        "digest": "8d62369c9bc54e96",
        "summary": "60b1d6e801b39fae",
    },
}

EVAL_DIGEST = "0804b23f2dce06fa"

ANALYSIS_DIGEST = "644af0372d67e154"
KALEIDOSCOPE_SPLIT_DIGEST = "0001c0c7e808621a"


# ----------------------------------------------------------------------------------------------- tests


def test_every_preset_keeps_its_config_hash():
    assert {n: config_hash(c) for n, c in PRESETS.items()} == PRESET_HASHES


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_sweep_point_keeps_its_run_directory_name(name):
    assert [pt.hash for pt in expand(BUILTIN[name])] == SWEEP_HASHES[name]


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    from modicl.training import train

    root = tmp_path_factory.mktemp("pinned")
    for name in CPU_PRESETS:
        train(short(name), root / name, progress=False)
    return root


EXACT = dict(rel=1e-6, abs=1e-6)
VMAP = dict(rel=0, abs=2e-3)  # batched matmuls round differently: a near-tie prediction in ≥ 1 000 may flip
LOOSE = dict(rel=1e-3, abs=0.06)  # other numerics: a few predictions may flip


def _check_values(got: dict, want: dict, tol: dict) -> None:
    assert sorted(got) == sorted(want)
    for step, (loss, sets) in want.items():
        if loss is None:
            assert got[step][0] is None
        else:
            assert got[step][0] == pytest.approx(loss, **tol), (step, "train_loss")
        for s, values in sets.items():
            assert got[step][1][s] == pytest.approx(values, **tol), (step, s)


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_a_short_run_of_each_cpu_preset_keeps_its_metrics_and_files(short_runs, name):
    d, want = short_runs / name, RUNS[name]
    assert run_files(d) == want["files"]
    _check_values(key_values(d), want["values"], EXACT if exact_numerics() else LOOSE)
    if exact_numerics():
        assert run_digest(d) == want["digest"]
        assert summary_digest(d) == want["summary"]


def test_eval_and_analyze_of_the_depth2_run_keep_their_numbers(short_runs, capsys):
    from modicl.analysis.registry import run_analyses
    from modicl.cli import main

    d = short_runs / "quick-depth2"
    assert main(["eval", str(d), "--checkpoint", "last", "--sequences", "64", "--device", "cpu", "--seed", "7"]) == 0
    run_analyses(d, "last", device="cpu")
    if not exact_numerics():
        pytest.skip(f"numbers pinned on {RECORDED_ON}")
    assert eval_digest(d) == EVAL_DIGEST
    assert analysis_digest(d) == ANALYSIS_DIGEST
    assert kaleidoscope_split_digest(d) == KALEIDOSCOPE_SPLIT_DIGEST


@pytest.mark.parametrize("backend", ["loop", "vmap"])
def test_an_ensemble_of_the_quick_presets_keeps_the_pinned_numbers(tmp_path, backend):
    """quick and quick-memorize differ only in n_id, so they train as one ensemble."""
    from modicl.ensemble import train_ensemble

    names = ("quick", "quick-memorize")
    dirs = [tmp_path / n for n in names]
    assert train_ensemble([short(n) for n in names], dirs, backend=backend, progress=False) == [None, None]
    for n, d in zip(names, dirs):
        # loop: each member runs the kernels of a run alone, bit for bit; vmap: batched matmuls round differently
        _check_values(
            key_values(d), RUNS[n]["values"], LOOSE if not exact_numerics() else EXACT if backend == "loop" else VMAP
        )
        if exact_numerics() and backend == "loop":
            assert run_digest(d) == RUNS[n]["digest"]


if __name__ == "__main__":  # print the current values, to re-record them
    import sys
    import tempfile
    import time

    from modicl.analysis.registry import run_analyses
    from modicl.cli import main
    from modicl.training import train

    root = Path(tempfile.mkdtemp())
    runs = {}
    for name in CPU_PRESETS:
        t0 = time.perf_counter()
        train(short(name), root / name, progress=False)
        print(f"{name} {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        d = root / name
        runs[name] = {
            "files": run_files(d),
            "values": key_values(d),
            "digest": run_digest(d),
            "summary": summary_digest(d),
        }
    import contextlib
    import time

    with contextlib.redirect_stdout(sys.stderr):
        t = time.perf_counter()
        main(
            [
                "eval",
                str(root / "quick-depth2"),
                "--checkpoint",
                "last",
                "--sequences",
                "64",
                "--device",
                "cpu",
                "--seed",
                "7",
            ]
        )
        t1 = time.perf_counter()
        run_analyses(root / "quick-depth2", "last", device="cpu")
        print(f"eval {t1 - t:.1f} s, analyze {time.perf_counter() - t1:.1f} s")
    print(
        json.dumps(
            {
                "PRESET_HASHES": {n: config_hash(c) for n, c in PRESETS.items()},
                "SWEEP_HASHES": {n: [pt.hash for pt in expand(s)] for n, s in BUILTIN.items()},
                "RUNS": runs,
                "EVAL_DIGEST": eval_digest(root / "quick-depth2"),
                "ANALYSIS_DIGEST": analysis_digest(root / "quick-depth2"),
                "KALEIDOSCOPE_SPLIT_DIGEST": kaleidoscope_split_digest(root / "quick-depth2"),
                "RECORDED_ON": {
                    "cpu_kind": __import__("modicl.runtime", fromlist=["cpu_kind"]).cpu_kind(),
                    "torch": torch.__version__,
                },
            },
            indent=1,
        ),
        file=sys.stdout,
    )
