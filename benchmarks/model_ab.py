"""The model's forward and backward, an older revision against this checkout, interleaved in one process.

Alternating whole runs (``demo_step_ab.sh``) resolves differences of ≈ 10 % on a VM whose rate drifts
from minute to minute; a change to the model's memory traffic is worth a few per cent. Here both models
(the same weights) take turns on the same batches, step by step, in one process, so both see the same
drift, and each pair of steps gives one speed ratio. It also checks that the two compute the same bits
(loss and every gradient), which a change meant only for speed must keep.

    python benchmarks/model_ab.py                   # HEAD against the working tree, quick-p11, one thread
    python benchmarks/model_ab.py --rev 320fe04 --threads 2 --steps 120 --dtype bf16

Prints the median and minimum time of a forward and backward (the loss of a training step; the optimizer
is not part of it) and the median of the paired ratios old/new (above 1: this checkout is faster).
Name the CPU kind with the numbers (printed first).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from modicl.allocator import keep_freed_memory
from modicl.data import sample_sequences
from modicl.model import build_model
from modicl.presets import preset
from modicl.runtime import cpu_kind
from modicl.steps import z_loss
from modicl.tasks import make_task_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="the older git revision (default HEAD)")
    ap.add_argument("--preset", default="quick-p11")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60, help="timed steps of each model")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    # the older package under another name, so both import side by side (modicl's imports are relative)
    archive = subprocess.run(["git", "-C", str(root), "archive", a.rev, "src/modicl"], capture_output=True)
    if archive.returncode:
        ap.error(f"--rev {a.rev}: {archive.stderr.decode().strip()}")  # exits 2, nothing written
    tmp = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    (tmp / "src" / "modicl").rename(tmp / "modicl_old")
    sys.path.insert(0, str(tmp))
    old_model = importlib.import_module("modicl_old.model")

    keep_freed_memory()  # as `modicl train` does
    torch.set_num_threads(a.threads)
    cfg = preset(a.preset)
    tasks = make_task_set(cfg.task, cfg.seed)
    torch.manual_seed(cfg.seed)
    new = build_model(cfg)
    old = old_model.build_model(cfg)
    old.load_state_dict(new.state_dict())
    models = {f"old ({a.rev})": old, "this checkout": new}
    id_tasks, pairs = torch.as_tensor(tasks.id_tasks), torch.as_tensor(tasks.train_pairs)
    gen = torch.Generator().manual_seed(0)
    per_task = cfg.train.batch_size // cfg.task.n_id
    batches = [sample_sequences(id_tasks, pairs, per_task, cfg.task.n_ctx, cfg.task.p, gen) for _ in range(4)]
    bf16 = a.dtype == "bf16"

    def forward_backward(model: torch.nn.Module, tokens: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = z_loss(model, tokens, n_var=cfg.task.n_var)
        loss.backward()
        out = [loss.detach()] + [p.grad for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return out

    same = all(torch.equal(x, y) for x, y in zip(forward_backward(old, batches[0]), forward_backward(new, batches[0])))
    times: dict[str, list[float]] = {n: [] for n in models}
    for i in range(5 + a.steps):
        for name, model in list(models.items())[:: 1 if i % 2 else -1]:  # alternate which goes first
            t = time.perf_counter()
            forward_backward(model, batches[i % len(batches)])
            if i >= 5:  # the first steps warm the allocator and caches
                times[name].append(time.perf_counter() - t)
    print(f"{a.preset}, {a.dtype}, {a.threads} thread(s), CPU kind {cpu_kind()}, torch {torch.__version__}")
    print(f"loss and every gradient bit for bit the same: {same}")
    base = times[f"old ({a.rev})"]
    for name, t in times.items():
        ratio = statistics.median(b / x for b, x in zip(base, t))
        print(
            f"{name:<24} median {statistics.median(t) * 1e3:6.1f} ms  min {min(t) * 1e3:6.1f} ms  "
            f"paired ratio old/this {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
