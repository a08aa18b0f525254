"""Peak memory of ``modicl analyze`` at the paper's width: an untrained checkpoint of the paper preset
(p 29, d_model 512, 4 heads, n_ctx 32) at a chosen depth, analysed in a child process whose peak RSS
(``getrusage`` of the children) and wall time are printed. Untrained weights allocate exactly what
trained ones do, so the memory is the same. Numbers in BENCHMARKS.md.

    python benchmarks/analysis_memory.py --layers 6 --what attention pca kaleidoscope kshot lens
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from modicl.config import to_dict
from modicl.model import Transformer
from modicl.presets import preset
from modicl.rundir import save_checkpoint, write_json
from modicl.tasks import make_task_set


def make_run(run_dir: Path, layers: int, seed: int = 1) -> None:
    """An untrained paper-width checkpoint ``last`` (weights, config, tasks) in ``run_dir``."""
    base = preset("paper")
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, n_layers=layers), seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", to_dict(cfg))
    tasks = make_task_set(cfg.task, cfg.seed)
    torch.manual_seed(seed)
    model = Transformer(cfg.model, cfg.task.p, 3 * cfg.task.n_ctx)
    save_checkpoint(run_dir, "last", model, cfg, tasks, step=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--what", nargs="+", default=["attention", "pca", "kaleidoscope", "kshot", "lens"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, args.layers)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "modicl",
                "analyze",
                str(run),
                "--checkpoint",
                "last",
                "--device",
                "cpu",
                "--what",
                *args.what,
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"depth {args.layers}, --what {' '.join(args.what)}: peak RSS {peak_mib:,.0f} MiB, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
