"""The training loop (PAPER.md §2.3): N runs stepped together, evaluation, checkpoints; one run is N = 1.

:class:`RunState` is one run inside the loop (its directory, model, optimizer, data stream, best
checkpoint); :func:`train_runs` steps N runs of one architecture with one of the step backends of
:mod:`modicl.steps` (AdamW, warmup + cosine, the z-token loss) and :func:`train` is it for one run
(:mod:`modicl.ensemble` for several). Every ``eval_every``
steps the four sets are evaluated, a line is appended to ``metrics.jsonl``, ``checkpoints/last`` is
rewritten with the optimizer and data-stream state, and ``checkpoints/best_ood`` keeps the weights of
the highest novel-query last-position accuracy on the *validation* o.o.d. tasks (the paper's early
stopping for transient o.o.d. generalization, selected without looking at the test tasks).
``resume=True`` continues from ``last`` and ends with the same metrics as an uninterrupted run.
Numerics (:mod:`modicl.runtime`): bf16 autocast on CUDA and on CPUs that compute bf16 natively (else
fp32); fused AdamW and optional ``torch.compile`` on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .circuits import attention_scores
from .config import ConfigError, RunConfig, run_seeds, validate
from .data import sample_sequences
from .evaluation import eval_seed, evaluate_run, selection_score, task_tensors
from .family import input_length
from .fields import differences
from .history import BEST_OOD, keep_copy, keeps, parse_schedule
from .metrics import PHASE_KEY
from .model import build_model, n_params
from .progress import progress_bar
from .report import write_summary
from .rundir import (
    RunDir,
    append_metrics,
    check_run_out,
    clear_dir,
    load_checkpoint,
    load_state,
    save_checkpoint,
    stream_device,
    truncate_metrics,
)
from .runlock import LOCK_NAME
from .runtime import autocast_for, numerics, restores_threads, setup_process
from .steps import build_optimizer, lr_multiplier, make_step, weight_decay_at
from .tasks import make_task_set


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the step and the checkpoint that was kept."""


def _slurm_job_id() -> str | None:
    """This process's SLURM job id as squeue shows it (ARRAYID_TASK for an array task), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def check_stream_device(state: dict, device: torch.device, run_dir: Path | str = "") -> None:
    """Refuse to resume a data stream on another device type than the one that drew it.

    The training batches come from a torch.Generator on the run's device; CPU and CUDA generators are
    different algorithms (Mersenne Twister vs Philox), so a saved stream cannot continue on the other
    kind, and the remaining batches would differ from an uninterrupted run. ``state`` is a
    ``last.state.pt`` dict; checkpoints written before ``generator_device`` was recorded are recognised
    by the size of the saved generator state.

    Raises:
        ConfigError: naming both device types and the flag that resumes the run.
    """
    saved = stream_device(state)
    if saved != device.type:
        raise ConfigError(
            f"{run_dir} was trained on {saved} and its data stream cannot move to {device.type} "
            f"(the generators differ); resume it with --train.device {saved}"
        )


class RunState:
    """One run inside a training loop: config, run directory, model, optimizer, data stream, the
    best-o.o.d. record and timing. :func:`train_runs` drives N of them (:func:`train` one,
    :mod:`modicl.ensemble` several).

    Opening a run validates ``cfg`` and either starts it fresh (writing config.json and tasks.json) or,
    with ``resume`` and a checkpoint present, restores the model, optimizer, data-stream state and
    metrics up to the checkpoint.

    If opening fails in a directory that was absent or empty, what it wrote there is removed again.

    Raises:
        ConfigError: a run directory that already holds a run without ``resume``, a non-empty
            directory that holds no run, a config that differs from the saved one on resume, or a
            checkpoint whose data stream was drawn on another device type.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, resume: bool, device: torch.device, dtype: torch.dtype):
        run_dir = Path(run_dir)
        check_run_out(run_dir)
        existed = run_dir.exists()
        fresh = not existed or not any(run_dir.iterdir())
        try:
            self._open(cfg, run_dir, resume=resume, device=device, dtype=dtype)
        except BaseException:
            if fresh and hasattr(self, "_lock"):  # e.g. task vectors that cannot be arranged: leave no half-made run
                clear_dir(run_dir, keep={LOCK_NAME})
                self._lock.close()
                if existed:
                    (run_dir / LOCK_NAME).unlink(missing_ok=True)
                else:
                    shutil.rmtree(run_dir, ignore_errors=True)
            raise

    def _open(self, cfg: RunConfig, run_dir: Path, *, resume: bool, device: torch.device, dtype: torch.dtype) -> None:
        self.cfg, self.run_dir, self.device, self.dtype = cfg, Path(run_dir), device, dtype
        rd = self.rundir = RunDir(run_dir)
        self._lock = rd.lock()  # released by close(), or by the kernel when the process ends
        self.autocast = autocast_for(device, dtype)
        run_dir, tc = self.run_dir, cfg.train
        self.seeds = run_seeds(cfg)
        has_ckpt = rd.has_checkpoint()
        if has_ckpt and not resume:
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        state = None
        self.resumed = resume and has_ckpt
        if self.resumed:
            diff = list(differences(rd.read_config(), cfg))
            if diff:
                raise ConfigError(
                    f"--resume with settings that differ from {rd.config} in {', '.join(diff)}; use the saved values"
                )
            ck = load_checkpoint(run_dir, "last", device)
            self.model, self.tasks, self.start = ck.model.train(), ck.tasks, ck.step
            state = load_state(run_dir)
            check_stream_device(state, device, run_dir)
            truncate_metrics(run_dir, self.start)
        else:
            rd.begin(cfg)
            self.tasks = make_task_set(cfg.task, self.seeds.task)
            rd.write_tasks(self.tasks)
            torch.manual_seed(self.seeds.init)
            self.model = build_model(cfg).to(device)
            self.start = 0
        self.opt = build_optimizer(self.model, tc, device)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(self.seeds.data + 0x5EED)
        self.best = {"acc": -math.inf, "step": -1}  # score (selection_score) and step of checkpoints/best_ood
        self.wall_before, self.train_s = 0.0, 0.0  # seconds of earlier sessions; train_s excludes evaluation
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            self.gen.set_state(state["generator"])
            self.best = state["best"]
            self.wall_before, self.train_s = state["elapsed"]["wall_s"], state["elapsed"]["train_s"]
        self.t_dev = task_tensors(self.tasks, device)
        self.keep = parse_schedule(tc.keep_checkpoints, tc.eval_every)
        self.per_task = tc.batch_size // cfg.task.n_id
        self.tokens_per_step = tc.batch_size * input_length(cfg.task.n_ctx, cfg.task.n_var)
        self.t0 = time.perf_counter()
        # One line per process that trained this run: where each resume started, on which host or SLURM
        # job, and with which numerics (thread count, dtype and CPU kind change a CPU trajectory).
        self.numerics = {**numerics(), "dtype": str(dtype).removeprefix("torch."), "device": str(device)}
        if self.resumed and rd.sessions.exists():
            before = (rd.read_sessions() or [{}])[-1]
            changed = [f"{k} {before[k]} → {v}" for k, v in self.numerics.items() if k in before and before[k] != v]
            if changed:
                warnings.warn(
                    f"resuming {run_dir} with other numerics ({', '.join(changed)}); the rest of the run "
                    "will not match an uninterrupted one bit for bit",
                    stacklevel=2,
                )
        rd.append_session(
            {
                "start_step": self.start,
                "resumed": self.resumed,
                "host": socket.gethostname(),
                "slurm_job_id": _slurm_job_id(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **self.numerics,
            }
        )

    def batch(self, step: int) -> Tensor:
        """The training batch of 0-based optimizer step ``step`` from this run's data stream, int64
        [batch_size, (n_var + 1)·n_ctx]; the step sets the share of bursty sequences (``task.burst_*``)."""
        t = self.cfg.task
        burst = (t.burst_pairs, 1.0 - step / t.burst_steps) if t.burst_pairs and step < t.burst_steps else None
        tasks, per_task = self.t_dev["id_tasks"], self.per_task
        if t.curriculum_n_id and step < t.curriculum_steps:
            tasks, per_task = tasks[: t.curriculum_n_id], self.cfg.train.batch_size // t.curriculum_n_id
        return sample_sequences(
            tasks, self.t_dev["train_pairs"], per_task, t.n_ctx, t.p, self.gen, t.shared_inputs, t.replacement, burst
        )

    def evaluate(self, step: int, train_loss: float | None) -> dict:
        """Evaluate the four sets, append the row to metrics.jsonl, update the checkpoints; return the row."""
        cfg, tc = self.cfg, self.cfg.train
        g = torch.Generator(device=self.device)
        g.manual_seed(eval_seed(self.seeds.data, step))
        m = evaluate_run(self.model, cfg, self.tasks, sequences=tc.eval_sequences, generator=g, autocast=self.autocast)
        # hidden progress: drawn after the sets, so the evaluation sequences are those of a run without it
        t = cfg.task
        probe = sample_sequences(
            self.t_dev["id_tasks"],
            self.t_dev["train_pairs"],
            max(1, 64 // t.n_id),
            t.n_ctx,
            t.p,
            g,
            shared_inputs=False,
        )[:64]
        row = {
            "step": step,
            "lr": tc.lr * lr_multiplier(max(step - 1, 0), tc),
            "train_loss": train_loss,
            "wall_s": self.wall_before + time.perf_counter() - self.t0,
            **m,
        }
        attention = attention_scores(self.model, probe, self.autocast, n_var=t.n_var)
        if attention is not None:
            row["attention"] = attention
        append_metrics(self.run_dir, row)
        if selection_score(row) > self.best["acc"]:
            self.best = {"acc": selection_score(row), "step": step}
            save_checkpoint(self.run_dir, BEST_OOD, self.model, cfg, self.tasks, step, metrics=row)
        elapsed = {"wall_s": row["wall_s"], "train_s": self.train_s}
        st = {
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "generator_device": self.device.type,
            "best": self.best,
            "elapsed": elapsed,
        }
        save_checkpoint(self.run_dir, "last", self.model, cfg, self.tasks, step, metrics=row, state=st)
        if keeps(step, tc.eval_every, self.keep):
            keep_copy(self.rundir.checkpoints, "last", step)
        return row

    def finish(self) -> dict:
        """Write summary.json and the plots; return the summary. Releases the run directory."""
        try:
            return write_summary(
                self.run_dir, tokens_per_step=self.tokens_per_step, n_parameters=n_params(self.model), **self.numerics
            )
        finally:
            self.close()

    def close(self) -> None:
        """Release the run directory's training lock (:mod:`modicl.runlock`)."""
        self._lock.close()


@restores_threads
def train(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool | str = True,
    stop_after: int | None = None,
) -> dict | None:
    """Train one model and write its run directory.

    Args:
        cfg: the run config (validated here).
        run_dir: output directory; created if absent.
        resume: continue from ``run_dir/checkpoints/last`` (the saved config must equal ``cfg`` except for
            device, threads and compile). Without a checkpoint there, starts fresh.
        progress: True: a progress bar (tqdm on a terminal, plain lines in a log); a string: plain lines
            named by it, for runs that share one stderr with other processes; False: none.
        stop_after: stop (as if interrupted) once this global step is checkpointed; for tests.

    Returns:
        The summary dict written to ``summary.json`` (None when stopped by ``stop_after``).

    Raises:
        ConfigError: invalid config, run directory already holding a run without ``resume``, or a
            mismatching config on resume.
        TrainingDiverged: NaN/inf loss; ``checkpoints/last`` keeps the last good evaluation step.
    """
    cfg = validate(cfg)
    device, dtype = setup_process(cfg.train)
    run = RunState(cfg, run_dir, resume=resume, device=device, dtype=dtype)
    with contextlib.closing(run):  # the run directory stays locked until training ends, however it ends
        (outcome,) = train_runs([run], "loop", progress=progress, stop_after=stop_after, desc="train")
    if isinstance(outcome, TrainingDiverged):
        raise outcome
    return outcome


def train_runs(
    runs: Sequence[RunState],
    backend: str = "loop",
    *,
    progress: bool | str = True,
    stop_after: int | None = None,
    desc: str = "train",
) -> list[dict | TrainingDiverged | None]:
    """Train ``runs`` together to their last step, each as if trained alone.

    The runs share one architecture and every training setting (one schedule for all:
    :func:`modicl.ensemble.ensemble_key`) and start at the same step; ``backend`` is ``loop`` or ``vmap``
    (:func:`modicl.steps.make_step`). A run whose loss becomes NaN or inf stops at the next check (every
    25 steps and at each evaluation) while the others go on. Runs are evaluated and checkpointed every
    ``eval_every`` steps; the caller opens and closes them.

    Args:
        progress: one progress bar over the steps, named ``desc``; with one run it shows the loss and
            the o.o.d. accuracies. A string: plain lines named by it instead (one every 60 s), for runs
            that share one stderr with other processes.
        stop_after: stop (as if interrupted) once this global step is checkpointed; for tests.
    Returns:
        Per run: its summary (finished), a :class:`TrainingDiverged` (it stopped; ``checkpoints/last``
        keeps the last evaluated step), or None (stopped by ``stop_after``).
    """
    first = runs[0]
    tc, start, device = first.cfg.train, first.start, first.device
    outcome: list[dict | TrainingDiverged | None] = [None] * len(runs)
    active = dict(enumerate(runs))
    stepper = make_step(backend, runs)
    for r in runs:
        if r.start == 0 and not r.resumed:
            r.evaluate(0, None)
    named = isinstance(progress, str)
    bar = progress_bar(
        total=tc.steps,
        initial=start,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        desc=progress if isinstance(progress, str) else desc,
        lines=named,
        interval=60.0 if named else 30.0,
    )
    # Per-run bookkeeping as tensors of length N (one kernel each per step, no host sync): the running
    # loss sums and the first non-finite step (−1 while finite).
    loss_sum = torch.zeros(len(runs), device=device)
    bad = torch.full((len(runs),), -1, dtype=torch.int64, device=device)
    n_since, last_good, ood_last = 0, start, "-"
    try:
        for step in range(start, tc.steps):
            t_step = time.perf_counter()
            # one schedule for all (their train configs are equal); each run draws from its own generator,
            # so its stream is the one it would see alone
            losses = stepper(
                [r.batch(step) for r in active.values()], tc.lr * lr_multiplier(step, tc), weight_decay_at(step, tc)
            )
            bad = torch.where((bad < 0) & ~torch.isfinite(losses), step + 1, bad)
            loss_sum += losses
            n_since += 1
            done = step + 1
            bar.update(1)
            is_eval = done % tc.eval_every == 0 or done == tc.steps
            if done % 25 == 0 or is_eval:
                bad_steps = bad.tolist()
                if max(bad_steps) >= 0:
                    for (i, r), b in zip(list(active.items()), bad_steps):
                        if b >= 0:
                            hint = "lower train.lr" + (" or use --train.dtype fp32" if r.dtype != torch.float32 else "")
                            if stepper.compiled:
                                # a compiled step runs other kernels: torch 2.13's Inductor, on the AVX2 code
                                # path with one thread, gave this model a wrong LayerNorm-bias gradient and a
                                # non-finite loss from step 1 where eager was fine (BENCHMARKS.md)
                                hint += " or --train.compile off"
                            outcome[i] = TrainingDiverged(
                                f"loss became non-finite at step {b}; checkpoints/last in {r.run_dir} "
                                f"keeps step {last_good}; {hint}"
                            )
                            del active[i]
                    if not active:
                        break
                    keep = torch.tensor([b < 0 for b in bad_steps], device=device)
                    loss_sum, bad = loss_sum[keep], bad[keep]
                    stepper.sync()
                    stepper = make_step(backend, list(active.values()))
                if len(runs) == 1:
                    bar.set_postfix(loss=f"{losses[0].item():.3f}", ood_novel=ood_last)
            share = (time.perf_counter() - t_step) / len(active)
            for r in active.values():
                r.train_s += share
            if is_eval:
                stepper.sync()
                for r, mean_loss in zip(active.values(), (loss_sum / n_since).tolist()):
                    row = r.evaluate(done, mean_loss)
                loss_sum.zero_()
                n_since, last_good = 0, done
                if len(runs) == 1:
                    ood_last = "/".join(f"{row[s].get(PHASE_KEY) or 0:.2f}" for s in ("ood_train", "ood_test"))
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", ood_novel=ood_last)
                if stop_after is not None and done >= stop_after and done < tc.steps:
                    return outcome
    finally:
        bar.close()
    for i, r in active.items():
        outcome[i] = r.finish()
    return outcome
