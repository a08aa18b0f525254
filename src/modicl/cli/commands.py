"""``modicl`` command line: a thin layer over the library, flags generated from the config dataclasses.

    modicl train [--preset quick|quick-depth2|quick-memorize|quick-role|quick-muon|quick-p11|paper|bench]
                 [--out DIR] [--resume] [--task.n-id 8 …] [--train.keep-checkpoints log+every:1000]
    modicl train --from RUN_DIR@step:N --out NEW [--train.lr 1e-4 --train.weight-decay 1 …]   (a branch)
    modicl eval RUN_DIR [--checkpoint last|best_ood|step:N] [--sequences 4096]
    modicl bench [--preset …] [--task.p 29 …] [--steps 20] [--dtypes fp32 bf16] [--ensemble 16 --backend vmap]
    modicl sweep SPEC [--out DIR] [--axis n_id=8,16,32 …] [--set train.steps=3000 …] [--dry-run]
                      [--executor slurm --slurm.partition P --slurm.gpus-per-job 1 --slurm.time 6:00:00 [--wait]]
    modicl status SWEEP_DIR
    modicl plot SWEEP_DIR | RUN_DIR
    modicl analyze RUN_DIR [--checkpoint best_ood|last|step:N] [--task 3,5] [--what attention pca …]

A configuration that cannot work, an unknown preset or flag, a missing checkpoint, or an output
directory that holds something else or is being trained by another process ends with one line on
stderr and exit code 2; a file that cannot be written (disk full, file too large, no permission) with
one line naming it and exit code 1. Output into a closed pipe (``| head``, on stdout or stderr) is dropped
quietly and the command does all its work (:mod:`modicl.streams`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..config import ConfigError, RunConfig, check_seed, validate
from ..hashing import config_hash
from ..history import BEST_OOD
from ..presets import preset
from ..streams import guard_streams
from .args import parse, peek_flag, pop_preset, reject_empty_out
from .sweep import cmd_plot, cmd_status, cmd_sweep


@dataclass(frozen=True)
class TrainCommand:
    """Train one model on in-context modular arithmetic and evaluate it on the four sets."""

    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    preset: str = "quick"
    """named starting point: quick (CPU, p = 7, depth 4), quick-depth2 (CPU, depth 2, d_model 64), quick-memorize
    (quick with n_id = 8), quick-role (quick-depth2 with the role embedding, 4 000 steps), quick-muon (quick-role with
    Muon), quick-p11 (quick-muon at p = 11 with 32-shot contexts: o.o.d. generalization on a CPU; the demo's), paper
    (PAPER.md §2.3, GPU), bench."""
    out: Path | None = None
    """run directory; None means runs/PRESET-CONFIGHASH."""
    resume: bool = False
    """continue from OUT/checkpoints/last."""
    from_: Annotated[str | None, tyro.conf.arg(name="from")] = None
    """RUN_DIR@step:N (or RUN_DIR@last): branch a new run (--out) from that kept checkpoint of another, with
    the training flags given here changed (lr, weight decay, schedule, steps); the defaults are the parent's."""
    overwrite: bool = False
    """delete OUT first if it holds a run."""
    progress: bool = True
    """show a progress bar."""


@dataclass(frozen=True)
class EvalCommand:
    """Re-evaluate a checkpoint of a run on the four sets and the validation o.o.d. set; write eval/CHECKPOINT.json and
    eval/kshot_CHECKPOINT.png."""

    run_dir: tyro.conf.Positional[Path]
    checkpoint: str = BEST_OOD
    """checkpoint: best_ood, last, or step:N of a kept history (train.keep-checkpoints)."""
    sequences: int = 4096
    """sequences per evaluation set."""
    device: str = "auto"
    seed: int = 12345
    """seed of the evaluation sequences."""


@dataclass(frozen=True)
class BenchCommand:
    """Measure training throughput: steps/s, tokens/s, model FLOP/s and its ratio to a matmul ceiling."""

    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    preset: str = "bench"
    """named starting point; 'bench' is the reference: p 29, d_model 128, 2 layers, 4 heads, bs 128, n_ctx 32."""
    steps: int = 20
    """timed steps per dtype (after 5 warm-up steps)."""
    dtypes: tuple[Literal["fp32", "bf16"], ...] = ("fp32", "bf16")
    ensemble: int = 0
    """if > 0: instead, compare an ensemble of this many members with one model (member-steps/s)."""
    backend: Literal["vmap", "loop"] = "vmap"
    """ensemble backend for --ensemble."""


@dataclass(frozen=True)
class AnalyzeCommand:
    """Open up a trained model: attention maps, circle-of-circles PCA, kaleidoscope similarity, k-shot grids,
    ratio matching vs modular regression, label noise, logit lens; writes RUN_DIR/analysis/."""

    run_dir: tyro.conf.Positional[Path]
    checkpoint: str = BEST_OOD
    """checkpoint: best_ood, last, or step:N of a kept history (train.keep-checkpoints)."""
    task: str | None = None
    """probe task 'a,b' (n_var residues; default: the run's first o.o.d. task)."""
    what: tuple[str, ...] = ()
    context: str | None = None
    """k-shot grid context 'x,y;x,y;…' (default: distinct random pairs)."""
    shots: tuple[int, ...] = ()
    """k-shot grid shot counts (default 1, 2, n_ctx/2, n_ctx−1)."""
    device: str = "auto"
    seed: int = 0


def cmd_train(argv: list[str]) -> int:
    from ..branch import branch_run, split_ref
    from ..rundir import RunDir, clear_run
    from ..training import train

    name, rest = pop_preset(argv, "quick")
    source = peek_flag(rest, "--from")
    if source is not None:
        if any(a == "--preset" or a.startswith("--preset=") for a in argv):
            raise ConfigError("--from takes the parent run's config; drop --preset")
        parent, ref = split_ref(source)
        base = RunDir(parent).read_config() if RunDir(parent).config.exists() else None
        if base is None:
            raise ConfigError(f"--from {source}: {parent} is not a run directory (no config.json)")
    else:
        base = preset(name)
    args = parse(TrainCommand, rest, TrainCommand(config=base, preset=name), "modicl train")
    cfg = validate(args.config)
    reject_empty_out(rest)
    if source is not None:
        if args.out is None:
            raise ConfigError("--from needs --out NEW, the branch's own run directory")
        if args.overwrite:
            raise ConfigError(
                "--overwrite does not apply to a branch: give --from a new --out (or delete the old branch first)"
            )
        if not (args.resume and RunDir(args.out).has_checkpoint()):
            record = branch_run(parent, ref, args.out, cfg)
            changes = (
                ", ".join(f"{k} {a} → {b}" for k, a, b in ((k, *v) for k, v in record["changed"].items())) or "nothing"
            )
            print(f"branch of {parent} at step {record['step']} ({record['checkpoint']}); changed: {changes}")
        summary = train(cfg, args.out, resume=True, progress=args.progress)
        return _report_training(summary, cfg, args.out)
    out = args.out or Path("runs") / f"{name}-{config_hash(cfg)}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    if RunDir(out).holds_other_files():
        raise ConfigError(
            f"--out {out} is not empty and holds no modicl run; choose another directory "
            "(--overwrite only replaces run directories)"
        )
    if args.overwrite and out.exists():
        clear_run(out)  # under the run's lock: refused while another process trains it
    print(f"run directory: {out}")
    summary = train(cfg, out, resume=args.resume, progress=args.progress)
    return _report_training(summary, cfg, out)


def _report_training(summary: dict, cfg: RunConfig, out: Path) -> int:
    from ..phases import PHASE_LABELS, format_table

    print(f"\nfinal (step {summary['steps']}), 95 % intervals:")
    print(format_table(summary["final"], cfg.task.p, cfg.phase_threshold))
    print(
        f"\nbest o.o.d. checkpoint (step {summary['best_ood']['step']}, selected on the validation o.o.d. tasks; "
        "test numbers):"
    )
    print(format_table(summary[BEST_OOD], cfg.task.p, cfg.phase_threshold))
    print(
        f"\nphase: {PHASE_LABELS[summary['phase']]} {summary['phase_pattern']} (i.d. train, i.d. test, o.o.d. train, "
        f"o.o.d. test; ✓ = novel-query last-position accuracy ≥ {cfg.phase_threshold}); at the best checkpoint: "
        f"{PHASE_LABELS[summary['phase_best_ood']]} {summary['phase_pattern_best_ood']}"
    )
    print(
        f"wall time {summary['wall_s']:.0f} s, {summary['tokens_per_s']:,.0f} tokens/s ({summary['dtype']}, "
        f"threads={summary['threads']}, CPU kind {summary['cpu_kind']}); results in {out}"
    )
    return 0


def cmd_eval(argv: list[str]) -> int:
    from ..evaluation import evaluate_checkpoint
    from ..history import file_stem
    from ..metrics import SETS, VAL_SET
    from ..phases import PHASE_LABELS, format_table
    from ..report.figures import kshot_plot
    from ..rundir import RunDir, write_json

    args = parse(EvalCommand, argv, tyro.MISSING_NONPROP, "modicl eval")
    if args.sequences < 1:  # the flags' names in the message; the library checks the same with its own
        raise ConfigError(f"--sequences {args.sequences} must be ≥ 1")
    check_seed(args.seed, "--seed")
    out = evaluate_checkpoint(
        args.run_dir, args.checkpoint, sequences=args.sequences, seed=args.seed, device=args.device
    )
    cfg = RunDir(args.run_dir).read_config()
    res = {k: v for k, v in out.items() if k in (*SETS, VAL_SET)}
    used = out["sequences_per_set"]
    phase = out["phase"]
    evals = RunDir(args.run_dir).evals
    evals.mkdir(exist_ok=True)
    stem = file_stem(args.checkpoint)  # step:500 → step-0000500, a file name without a colon
    write_json(evals / f"{stem}.json", out)
    kshot_plot({f"{args.checkpoint} step {out['step']}": res}, evals / f"kshot_{stem}.png", p=cfg.task.p)
    print(
        f"{args.run_dir} checkpoint {args.checkpoint} (step {out['step']}); sequences used per set: "
        + ", ".join(f"{k} {v}" for k, v in used.items())
    )
    print(format_table(res, cfg.task.p, cfg.phase_threshold))
    print(
        "k-shot accuracy (o.o.d. test), k = shots before the query:",
        " ".join(f"{k}:{a:.2f}" for k, a in enumerate(res["ood_test"]["kshot"])),
    )
    print(
        f"phase: {PHASE_LABELS[phase]} {out['phase_pattern']}; wrote {evals / (stem + '.json')} and "
        f"eval/kshot_{stem}.png"
    )
    return 0


def cmd_bench(argv: list[str]) -> int:
    from ..bench import benchmark

    name, rest = pop_preset(argv, "bench")
    base = preset(name)
    args = parse(BenchCommand, rest, BenchCommand(config=base, preset=name), "modicl bench")
    cfg = validate(args.config)
    if args.steps < 1 or args.ensemble < 0:
        raise ConfigError("--steps must be ≥ 1 and --ensemble ≥ 0")
    if args.ensemble > 0:
        from ..bench import benchmark_ensemble

        results = [benchmark_ensemble(cfg, args.ensemble, args.backend, dtype=d, steps=args.steps) for d in args.dtypes]
    else:
        results = [benchmark(cfg, dtype=d, steps=args.steps) for d in args.dtypes]
    print(json.dumps(results, indent=1))
    return 0


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} {text!r} must be integers separated by commas") from None


def _analyze_command() -> type:
    """:class:`AnalyzeCommand` with ``--what`` choosing among the analyses registered in
    :data:`modicl.analysis.registry.ANALYSES`, all of them by default (built when the command runs, so that the
    other commands do not import the analyses)."""
    from ..analysis.registry import ANALYSES

    names = tuple(ANALYSES)
    ns = {
        "__annotations__": {"what": tuple[Literal[names], ...]},  # type: ignore[valid-type]  # names known at run time
        "what": names,
        "__doc__": AnalyzeCommand.__doc__,
        "__module__": AnalyzeCommand.__module__,
        "__qualname__": AnalyzeCommand.__qualname__,
    }
    return dataclass(frozen=True)(type("AnalyzeCommand", (AnalyzeCommand,), ns))


def cmd_analyze(argv: list[str]) -> int:
    from ..analysis.registry import analysis_dir, run_analyses

    args = parse(_analyze_command(), argv, tyro.MISSING_NONPROP, "modicl analyze")
    check_seed(args.seed, "--seed")
    task = _ints(args.task, "--task") if args.task else None
    context = [_ints(c, "--context") for c in args.context.split(";")] if args.context else None
    res = run_analyses(
        args.run_dir, args.checkpoint, task, args.what, context, args.shots or None, args.device, args.seed
    )
    print(
        f"{args.run_dir} checkpoint {args.checkpoint} (step {res['step']}), probe task {tuple(res['task'])} "
        f"({res['task_membership']} task{', degenerate: a component is 0' if res['task_degenerate'] else ''})"
    )
    for name, why in res["skipped"].items():
        print(f"skipped {name}: {why}")
    if res.get("probes", {}).get("subsampled"):
        print(
            f"attention / PCA / similarity on a random {res['probes']['used']} of the {res['probes']['of']} probe "
            "pairs (bounded memory)"
        )
    if "attention" in res:
        named = [f"{h}={v['name']}" for h, v in res["attention"].items() if v["name"] != "diffuse"]
        print("heads:", ", ".join(named) or "all diffuse")
    if "pca" in res:
        b = res["pca"]["best_head"]
        c = res["pca"]["heads"][b]
        print(
            f"most circular head {b}: outer ring {c['outer_ring']:.2f}, inner rings {c['inner_rings']:.2f}, x "
            f"separation {c['x_separation']:.2f}"
        )
    if "kaleidoscope" in res:
        blocks = res["kaleidoscope"]["blocks"]
        for head, suffix in (
            ("same-line minus different-line similarity of block outputs at z_k:", "_z"),
            ("  the same, held-out inputs against training inputs:", "_z_heldout_vs_train"),
        ):
            print(
                head,
                ", ".join(f"{b.removesuffix(suffix)} {v['gap']:.2f}" for b, v in blocks.items() if b.endswith(suffix)),
            )
    if "kshot" in res:
        print(
            "k-shot grid accuracy (model / ratio matching):",
            ", ".join(
                f"{k}: {v['accuracy']:.2f}/{v['ratio_matching_accuracy']:.2f}"
                for k, v in res["kshot"].items()
                if k != "context"
            ),
        )
    if "algorithms" in res:
        c = res["algorithms"]["o.o.d."]
        print(
            f"o.o.d. last-shot accuracy: model {c['model'][-1]:.2f}, RM {c['ratio_matching'][-1]:.2f}, MR "
            f"{c['modular_regression'][-1]:.2f}; "
            f"agreement with RM {c['agree_ratio_matching'][-1]:.2f}, with MR {c['agree_modular_regression'][-1]:.2f}"
        )
    print(f"figures and analysis.json in {analysis_dir(args.run_dir, args.checkpoint)}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "bench": cmd_bench,
    "sweep": cmd_sweep,
    "status": cmd_status,
    "plot": cmd_plot,
    "analyze": cmd_analyze,
}


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """While a command runs, SIGINT and SIGTERM stop it the way Ctrl-C does (checkpoints kept, sweep
    workers stopped); the previous handlers come back afterwards (``main`` may be called from Python).
    Set explicitly: a job started with ``&`` from a script inherits SIGINT ignored, and Python's default
    SIGTERM kills the process without stopping a sweep's workers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    previous = {
        s: signal.signal(s, h)
        for s, h in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _raise_interrupt))
    }
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"modicl: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        print(__doc__)
        return 0
    from ..rundir import CheckpointError
    from ..training import TrainingDiverged

    try:
        with _interrupt_on_signals(), guard_streams():
            return COMMANDS[argv[0]](argv[1:])
    except (ConfigError, CheckpointError) as e:
        print(f"modicl {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # a pipe the stream guards do not cover broke the work off: not a success
        print(f"modicl {argv[0]}: stopped: an output pipe was closed; the last checkpoint is kept", file=sys.stderr)
        return 1
    except OSError as e:  # a file that cannot be written or read: disk full, file too large, no permission
        where = f"{e.filename}: " if e.filename else ""
        print(f"modicl {argv[0]}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except TrainingDiverged as e:
        print(f"modicl {argv[0]}: training diverged: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        how = {"train": "the same command plus --resume", "sweep": "the same command (finished points are skipped)"}
        print(
            f"\nmodicl {argv[0]}: interrupted; "
            + (
                f"the last checkpoint is kept, continue with {how[argv[0]]}"
                if argv[0] in how
                else "nothing was written"
            ),
            file=sys.stderr,
        )
        return 130


def entry() -> None:
    """The ``modicl`` command (and ``python -m modicl``): a process of its own, so it may keep freed
    memory for reuse (:mod:`modicl.allocator`), which library calls and :func:`main` leave alone."""
    from ..allocator import keep_freed_memory

    if len(sys.argv) > 1 and sys.argv[1] in ("train", "sweep", "bench"):
        keep_freed_memory()
    sys.exit(main())
