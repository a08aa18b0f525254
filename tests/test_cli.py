import json
import subprocess
import sys

import pytest

from modicl.cli import main
from modicl.phases import PHASE_LABELS

TINY = [
    "--task.p",
    "5",
    "--task.n-id",
    "4",
    "--task.n-ctx",
    "4",
    "--model.d-model",
    "32",
    "--model.n-layers",
    "1",
    "--model.n-heads",
    "2",
    "--train.batch-size",
    "16",
    "--train.steps",
    "40",
    "--train.eval-every",
    "20",
    "--train.eval-sequences",
    "32",
    "--train.dtype",
    "fp32",
    "--train.warmup-steps",
    "5",
    "--no-progress",
]


def test_train_prints_the_table_that_summary_json_holds_and_eval_rewrites_kshot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "quick", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    ood = summary["final"]["ood_test"]
    lo, hi = ood["acc_last_novel_ci"]
    row = next(line for line in printed.splitlines() if line.startswith("o.o.d. test"))
    assert row.split()[2:6] == [f"{ood['acc_last_novel']:.3f}", f"[{lo:.2f},", f"{hi:.2f}]", str(ood["n_novel_last"])]
    assert f"{ood['baselines']['copy']['acc_last']:.3f}" in row and f"{ood['acc_last']:.3f}" in row
    assert f"phase: {PHASE_LABELS[summary['phase']]} {summary['phase_pattern']}" in printed
    for key in ("phase", "phase_pattern", "steps", "wall_s", "tokens_per_s", "threads", "dtype", "cpu_kind"):
        assert key in summary
    assert set(summary["best_ood"]) == {"step", "id_train", "id_test", "ood_train", "ood_test", "ood_val"}
    assert {
        "acc",
        "acc_ci",
        "acc_last",
        "acc_last_ci",
        "acc_last_novel",
        "acc_last_novel_ci",
        "n_novel_last",
        "baselines",
        "loss",
    } <= set(summary["final"]["id_test"])
    assert main(["eval", str(out), "--checkpoint", "last", "--sequences", "64"]) == 0
    printed = capsys.readouterr().out
    ev = json.loads((out / "eval" / "last.json").read_text())
    assert len(ev["ood_test"]["kshot"]) == 4 and ev["step"] == 40
    # 64 sequences spread over the 11 o.o.d. test tasks of p = 5, n_id = 4 run 6 per task: 66, said as such
    assert ev["sequences_per_set"]["ood_test"] == ev["ood_test"]["n_sequences"] == 66 and "ood_test 66" in printed
    assert (out / "eval" / "kshot_last.png").exists() and (out / "plots" / "kshot.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--task.p", "8"], "task.p = 8 is not prime"),
        (["train", "--task.n-id", "49"], "task.n_id = 49"),
        (["train", "--task.n-id", "30"], "multiple of 4"),
        (["train", "--task.alpha", "1.5"], "strictly between 0 and 1"),
        (["train", "--task.n-ctx", "0"], "task.n_ctx = 0"),
        (["train", "--train.batch-size", "100"], "not a multiple of task.n_id = 32 (balanced batches); use 96 or 128"),
        (["train", "--model.n-heads", "3"], "not divisible"),
        (["train", "--preset", "huge"], "unknown preset 'huge'"),
        (["train", "--train.stepz", "5"], "unknown option '--train.stepz'; did you mean --train.steps?"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["frobnicate"], "unknown command"),
        (["train", "--model.rope-theta", "0"], "model.rope_theta = 0.0 must be > 1"),
        (["train", "--train.warmup-start", "-1"], "train.warmup_start must be in (0, 1]"),
        (["eval", "/nonexistent/run", "--sequences", "0"], "--sequences 0 must be ≥ 1"),
        (["bench", "--steps", "0"], "--steps must be ≥ 1"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "modicl", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_reported_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    (out / "checkpoints" / "best_ood.json").write_text("{not json")
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and len(err.strip().splitlines()) == 1


def test_overwrite_replaces_only_run_directories_and_out_must_be_a_directory(tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file.txt").write_text("keep me")
    assert main(["train", *TINY, "--out", str(precious), "--overwrite"]) == 2
    assert "holds no modicl run" in capsys.readouterr().err and (precious / "file.txt").exists()
    (tmp_path / "afile").write_text("x")
    assert main(["train", *TINY, "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 0  # a run directory is replaced


def test_resume_of_a_run_stopped_at_step_0_logs_step_0_once(tmp_path):
    from conftest import tiny_config

    from modicl.training import train

    cfg = tiny_config(steps=20, eval_every=10)
    train(cfg, tmp_path / "r", progress=False, stop_after=0)  # checkpoint at step 0 only
    train(cfg, tmp_path / "r", progress=False, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 20]
