"""The SLURM executor: option parsing and errors without SLURM, and real sweeps against a real cluster.

The tests marked ``slurm`` submit through the real sbatch of a running cluster (``scripts/slurm-single-node.sh
start``, then ``export SLURM_CONF=…``). Without one they are skipped, unless MODICL_REQUIRE_SLURM=1 (set by
.ci/run, which starts the cluster), where a missing cluster fails them.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_config

from modicl.cli import main
from modicl.config import ConfigError
from modicl.sweep import SweepSpec, load_sweep, run_sweep, sweep_status
from modicl.sweep.slurm import (
    Slurm,
    SlurmOptions,
    job_log,
    parse_squeue,
    queue_states,
    slurm_parameters,
    submit_sweep,
    time_minutes,
    wait_for_sweep,
)

# A TOML spec for the CLI: the tiny config of conftest.py, three seeds.
TINY_TOML = """
name = "tiny"
preset = "quick"
[set]
"task.p" = 5
"task.n_id" = 4
"task.n_ctx" = 4
"model.d_model" = 32
"model.n_layers" = 1
"model.n_heads" = 2
"train.steps" = 40
"train.batch_size" = 16
"train.lr" = 3e-3
"train.weight_decay" = 0.1
"train.warmup_steps" = 10
"train.eval_every" = 20
"train.eval_sequences" = 32
"train.eval_batch_size" = 64
"train.dtype" = "fp32"
"train.device" = "cpu"
[axes]
seed = [1, 2, 3]
"""


def test_what_the_slurm_executor_hands_submitit_and_the_batch_script_it_makes(tmp_path, monkeypatch):
    """No cluster needed: the sbatch options a sweep asks for, as submitit receives and renders them."""
    import submitit
    from submitit.slurm import slurm as submitit_slurm

    from modicl.sweep.slurm import _executor

    opts = SlurmOptions(
        partition="gpu",
        gpus_per_job=1,
        cpus_per_job=8,
        time="1-12:00",
        mem_gb=7.5,
        account="lab",
        setup=("module load cuda",),
    )
    golden = {
        "job_name": "modicl-demo",
        "time": 2160,
        "cpus_per_task": 8,
        "array_parallelism": 64,
        "signal_delay_s": 90,
        "stderr_to_stdout": True,
        "partition": "gpu",
        "account": "lab",
        "gpus_per_node": 1,
        "setup": ["module load cuda"],
        "mem": "7680MB",
    }
    assert slurm_parameters(opts, "demo") == golden
    assert slurm_parameters(SlurmOptions(), "demo") == {  # defaults: SLURM's own partition, memory, no GPU
        "job_name": "modicl-demo",
        "time": 360,
        "cpus_per_task": 2,
        "array_parallelism": 64,
        "signal_delay_s": 90,
        "stderr_to_stdout": True,
    }
    # the executor object the sweep submits through carries exactly these (srun faked present)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    ex = _executor(tmp_path, opts, "demo")
    assert {k: ex.parameters[k] for k in golden} == golden
    assert ex.max_num_timeout == opts.max_requeues
    script = submitit_slurm._make_sbatch_string(
        command="python -m x", folder=str(tmp_path / "slurm" / "%j"), map_count=4, **golden
    )
    for line in (
        "#SBATCH --time=2160",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=7680MB",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --signal=USR2@90",
        "#SBATCH --array=0-3%4",
        "#SBATCH --job-name=modicl-demo",
        "module load cuda",
    ):
        assert line in script.splitlines()
    # the log path modicl reads a job's output from is the one the script writes it to
    out = next(ln for ln in script.splitlines() if ln.startswith("#SBATCH --output="))
    assert out.removeprefix("#SBATCH --output=").replace("%A_%a", "77_3") == str(job_log(tmp_path, "77_3"))


# squeue -h -r -o '%i|%T|%r' as a cluster prints it: one array task per line
_SQUEUE = """4242_0|RUNNING|None
4242_1|PENDING|Priority
4242_2|PENDING|PartitionTimeLimit
4243|PENDING|Resources
4244_0|COMPLETING|None
"""


def test_recorded_squeue_output_is_read_into_each_points_state(tmp_path, monkeypatch):
    assert parse_squeue(_SQUEUE, ["4242_0", "4242_2", "4243", "9999_0"]) == {
        "4242_0": ("RUNNING", "None"),
        "4242_2": ("PENDING", "PartitionTimeLimit"),
        "4243": ("PENDING", "Resources"),
    }
    (tmp_path / "slurm").mkdir()
    jobs = {"a": "4242_0", "b": "4242_1", "c": "4242_2", "d": "4244_0", "e": "4242_1"}
    (tmp_path / "slurm" / "submissions.jsonl").write_text(
        "".join(json.dumps({"job_id": j, "hashes": [h]}) + "\n" for h, j in jobs.items())
    )
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=_SQUEUE, stderr="")

    monkeypatch.setattr("modicl.sweep.slurm.subprocess.run", fake_run)
    rows = [{"hash": h, "state": "done" if h == "e" else "new", "error": None} for h in jobs]
    Slurm.report(tmp_path, rows)
    got = {r["hash"]: (r["state"], r.get("note")) for r in rows}
    assert got["a"] == ("running", None) and got["b"] == ("queued", None) and got["d"] == ("running", None)
    assert got["c"][0] == "queued" and "PartitionTimeLimit" in got["c"][1] and "can never start" in got["c"][1]
    assert got["e"] == ("done", None)
    assert calls == [
        ["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", "4242,4244"]
    ]  # one squeue call, done points not asked
    # a cluster whose squeue no longer knows any of the jobs: they have left the queue
    monkeypatch.setattr(
        "modicl.sweep.slurm.subprocess.run",
        lambda cmd, **kw: subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="slurm_load_jobs error: Invalid job id specified"
        ),
    )
    assert queue_states(["4242_0"]) == {}
    monkeypatch.setattr(
        "modicl.sweep.slurm.subprocess.run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Unable to contact slurm controller"),
    )
    with pytest.raises(ConfigError, match="squeue failed: Unable to contact slurm controller"):
        queue_states(["4242_0"])


@pytest.mark.parametrize(
    "text, minutes",
    [("90", 90), ("1:30", 2), ("0:59", 1), ("6:00:00", 360), ("1-12", 2160), ("1-12:30", 2190), ("2-0:0:1", 2881)],
)
def test_slurm_time_limits_in_minutes(text, minutes):
    assert time_minutes(text) == minutes


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "0", "-5", "1-2:3:4:5", ""])
def test_bad_time_limits_are_refused(text):
    with pytest.raises(ConfigError, match="slurm.time"):
        time_minutes(text)


def test_bad_slurm_options_and_missing_slurm_are_one_line_errors(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--executor", "slurm", "--slurm.time", "soon"]) == 2
    assert "--slurm.time 'soon' is not a SLURM time limit" in capsys.readouterr().err
    assert (
        main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--executor", "slurm", "--slurm.cpus-per-job", "0"])
        == 2
    )
    assert "--slurm.cpus-per-job 0" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--executor", "slurm", "--slurm.partitoin", "gpu"]) == 2
    assert "did you mean --slurm.partition?" in capsys.readouterr().err
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "needs SLURM's sbatch on PATH" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "runs").exists()
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--executor", "slurm"]) == 2
    assert "needs submitit: pip install submitit" in capsys.readouterr().err


def test_status_of_a_local_sweep_reports_done_interrupted_failed(tmp_path, capsys):
    spec = SweepSpec("t", base=tiny_config(steps=20, eval_every=10), axes={"seed": [1, 2, 3]})
    run_sweep(spec, tmp_path, progress=False)
    _, points = load_sweep(tmp_path)
    runs = [tmp_path / "runs" / p.hash for p in points]
    (runs[1] / "summary.json").unlink()  # as if killed after its last checkpoint
    (runs[2] / "summary.json").unlink()
    (runs[2] / "error.txt").write_text("RuntimeError: injected\n\ntraceback")
    rows = sweep_status(tmp_path)
    assert [(r["hash"], r["state"], r["step"]) for r in rows] == [
        (points[0].hash, "done", 20),
        (points[1].hash, "interrupted", 20),
        (points[2].hash, "failed", 20),
    ]
    assert rows[2]["error"] == "RuntimeError: injected"
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{points[1].hash}  interrupted  seed=2  (step 20/20)" in out
    assert f"{points[2].hash}  failed       seed=3  (RuntimeError: injected)" in out
    assert out.strip().splitlines()[-1] == "3 points: 1 done, 1 interrupted, 1 failed"
    assert main(["status", str(tmp_path / "runs")]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- real SLURM


@pytest.fixture
def slurm():
    """Skip (or fail under MODICL_REQUIRE_SLURM=1) unless a SLURM controller answers."""
    ok = (
        shutil.which("sinfo") is not None
        and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=60).returncode == 0
    )
    if not ok:
        if os.environ.get("MODICL_REQUIRE_SLURM") == "1":
            pytest.fail(
                "MODICL_REQUIRE_SLURM=1 but no SLURM cluster answers; start one: scripts/slurm-single-node.sh start"
            )
        pytest.skip("no SLURM cluster (scripts/slurm-single-node.sh start; export SLURM_CONF=…)")


def _sessions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]


def _why(row: dict, out_dir: Path, job_id: str) -> str:
    """What a failed SLURM test needs to be diagnosed from CI's output alone: the point's state and
    error, its error.txt and the tail of the job's log."""
    run_dir = out_dir / "runs" / row["hash"]
    error = run_dir / "error.txt"
    log = job_log(out_dir, job_id)
    tail = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else ["(no job log)"]
    return "\n".join(
        [
            f"state {row['state']}, error {row['error']}, step {row['step']}",
            error.read_text() if error.exists() else "(no error.txt)",
            *tail,
        ]
    )


def _wait_until(pred, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out waiting for the SLURM job"
        time.sleep(0.1)


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_cli_sweep_on_slurm_gives_the_local_results_table(slurm, tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    out = tmp_path / "on-slurm"
    args = [
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--executor",
        "slurm",
        "--slurm.cpus-per-job",
        "1",
        "--slurm.time",
        "10",
        "--no-ensemble",
        "--no-progress",
    ]
    assert main([*args, "--wait"]) == 0
    printed = capsys.readouterr().out
    assert "submitted 3 points as 3 SLURM jobs" in printed and "3 points: 3 done" in printed
    subs = [json.loads(line) for line in (out / "slurm" / "submissions.jsonl").read_text().splitlines()]
    assert len(subs) == 3
    for s in subs:  # each point was trained by the array task recorded for it
        assert [x["slurm_job_id"] for x in _sessions(out / "runs" / s["hashes"][0])] == [s["job_id"]]

    # The same sweep run here, in this process: the same rows, value for value.
    run_sweep(SweepSpec("tiny", preset="quick", **_toml_parts()), tmp_path / "local", progress=False, ensemble=False)
    on_slurm = pd.read_csv(out / "results.csv").sort_values("hash").reset_index(drop=True)
    local = pd.read_csv(tmp_path / "local" / "results.csv").sort_values("hash").reset_index(drop=True)
    metrics = [
        c for c in local.columns if c.startswith(("final.", "best_ood")) or c in ("hash", "seed", "phase", "steps")
    ]
    assert len(on_slurm) == 3
    pd.testing.assert_frame_equal(on_slurm[metrics], local[metrics])

    assert main(args) == 0  # re-submitting a finished sweep submits nothing
    assert "nothing to submit" in capsys.readouterr().out
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "3 points: 3 done"


def _toml_parts():
    import tomllib

    d = tomllib.loads(TINY_TOML)
    return {"set": d["set"], "axes": d["axes"]}


def _long_spec() -> SweepSpec:
    return SweepSpec("long", base=tiny_config(steps=4000, eval_every=50, threads=1), axes={"seed": [1]})


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_scancel_mid_run_then_resubmission_resumes_from_the_checkpoint(slurm, tmp_path):
    (sub,) = submit_sweep(_long_spec(), tmp_path, SlurmOptions(cpus_per_job=1, time="10"))
    run_dir = tmp_path / "runs" / sub.hashes[0]
    _wait_until(lambda: (sweep_status(tmp_path)[0]["step"] or 0) >= 200)
    assert sweep_status(tmp_path)[0]["state"] == "running"
    subprocess.run(["scancel", sub.job_id], check=True)
    _wait_until(lambda: not queue_states([sub.job_id]))
    (row,) = sweep_status(tmp_path)
    assert row["state"] == "interrupted" and 200 <= row["step"] < 4000
    # where it resumes: the last complete checkpoint (the kill may fall after a metrics row, before its checkpoint)
    stopped_at = json.loads((run_dir / "checkpoints" / "last.json").read_text())["step"]
    assert stopped_at in (row["step"], row["step"] - 50)

    (again,) = submit_sweep(_long_spec(), tmp_path, SlurmOptions(cpus_per_job=1, time="10"))
    assert again.job_id != sub.job_id and again.hashes == sub.hashes
    (row,) = wait_for_sweep(tmp_path, [again.job_id], progress=False, poll_s=0.5)
    assert row["state"] == "done", _why(row, tmp_path, again.job_id)
    sessions = _sessions(run_dir)
    assert [(s["slurm_job_id"], s["start_step"]) for s in sessions] == [(sub.job_id, 0), (again.job_id, stopped_at)]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(0, 4001, 50))
    # resuming is exact: the same numbers as the run trained without interruption, here
    run_sweep(_long_spec(), tmp_path / "local", progress=False)
    local = json.loads(next((tmp_path / "local" / "runs").iterdir()).joinpath("summary.json").read_text())
    assert json.loads((run_dir / "summary.json").read_text())["final"] == local["final"]


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_a_timed_out_job_requeues_itself_and_resumes(slurm, tmp_path):
    (sub,) = submit_sweep(_long_spec(), tmp_path, SlurmOptions(cpus_per_job=1, time="10"))
    _wait_until(lambda: (sweep_status(tmp_path)[0]["step"] or 0) >= 200)
    # What SLURM sends signal_delay_s before the time limit; submitit checkpoints and requeues the job.
    subprocess.run(["scancel", "--signal=USR2", sub.job_id], check=True)
    (row,) = wait_for_sweep(tmp_path, [sub.job_id], progress=False, poll_s=0.5)
    assert row["state"] == "done", _why(row, tmp_path, sub.job_id)
    sessions = _sessions(tmp_path / "runs" / sub.hashes[0])
    assert len(sessions) == 2 and {s["slurm_job_id"] for s in sessions} == {sub.job_id}
    assert sessions[0]["start_step"] == 0 and 200 <= sessions[1]["start_step"] < 4000 and sessions[1]["resumed"]


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_an_unreachable_controller_is_a_one_line_error(slurm, tmp_path, monkeypatch, capsys):
    conf = Path(os.environ["SLURM_CONF"]).read_text() if os.environ.get("SLURM_CONF") else ""
    lines = [ln for ln in conf.splitlines() if not ln.startswith(("SlurmctldHost", "SlurmctldPort"))]
    dead = tmp_path / "slurm.conf"
    dead.write_text("\n".join(["SlurmctldHost=nowhere(127.0.0.1)", "SlurmctldPort=6999", *lines]) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(dead))
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "SLURM is not reachable: sinfo failed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_sbatch_refusing_the_jobs_is_a_one_line_error(slurm, tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    assert (
        main(
            [
                "sweep",
                str(spec),
                "--out",
                str(tmp_path / "s"),
                "--executor",
                "slurm",
                "--slurm.partition",
                "no-such-partition",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    refused = "sbatch refused the sweep: Batch job submission failed: Invalid partition name specified"
    assert err.strip() == f"modicl sweep: error: {refused}"
    assert not (tmp_path / "s" / "slurm" / "submissions.jsonl").exists()


def test_a_failed_point_with_a_checkpoint_resumes_and_status_survives_without_squeue(tmp_path, monkeypatch, capsys):
    spec = SweepSpec("t", base=tiny_config(steps=40, eval_every=10), axes={"seed": [1, 2]})
    run_sweep(spec, tmp_path, progress=False)
    _, points = load_sweep(tmp_path)
    run_dir = tmp_path / "runs" / points[0].hash
    # as a cluster job that ran out of requeues at step 40 leaves it: a checkpoint and an error
    (run_dir / "summary.json").unlink()
    (run_dir / "error.txt").write_text("UncompletedJobError: timed out too many times\n")
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "submissions.jsonl").write_text(
        json.dumps({"job_id": "77_0", "hashes": [points[0].hash]}) + "\n"
    )
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no squeue: the states come from disk, with a note
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"{points[0].hash}  failed       seed=1  (UncompletedJobError: timed out too many times)"
    assert (
        out[-2] == "2 points: 1 failed, 1 done"
        and out[-1].startswith("squeue failed:")
        and out[-1].endswith("shown from disk")
    )
    monkeypatch.undo()
    run_sweep(spec, tmp_path, progress=False)
    assert [s["start_step"] for s in _sessions(run_dir)] == [0, 40]  # resumed, not restarted
    assert sweep_status(tmp_path)[0]["state"] == "done"


@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_a_job_that_dies_before_python_is_failed_and_an_impossible_job_stops_the_wait(slurm, tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML.replace("seed = [1, 2, 3]", "seed = [1]"))
    out = tmp_path / "s"
    base = ["sweep", str(spec), "--out", str(out), "--executor", "slurm", "--slurm.cpus-per-job", "1", "--no-progress"]
    assert main([*base, "--slurm.setup", "echo broken-setup >&2; exit 3", "--wait"]) == 1
    (row,) = sweep_status(out)
    assert row["state"] == "failed" and row["error"].startswith(
        f"SLURM job {row['job_id']} ended before training started; see "
    )
    assert row["error"].endswith("_log.out: broken-setup")
    capsys.readouterr()
    assert main([*base, "--slurm.cpus-per-job", "64", "--wait"]) == 2  # more CPUs than the node has
    err = capsys.readouterr().err.strip()
    assert "can never start (SLURM reason: PartitionConfig)" in err and len(err.splitlines()) == 1
    (row,) = sweep_status(out)
    assert row["state"] == "queued" and "PartitionConfig" in row["note"]
    subprocess.run(["scancel", row["job_id"]], check=True)
