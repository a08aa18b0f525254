"""``modicl`` command line: a thin layer over the library, flags generated from the config dataclasses.

    modicl train [--preset quick|quick-depth2|quick-memorize|paper] [--out DIR] [--resume] [--task.n-id 8 …]
    modicl eval RUN_DIR [--checkpoint last|best_ood] [--sequences 4096]
    modicl bench [--preset …] [--task.p 29 …] [--steps 20] [--dtypes fp32 bf16] [--ensemble 16 --backend vmap]
    modicl sweep SPEC [--out DIR] [--axis n_id=8,16,32 …] [--set train.steps=3000 …] [--dry-run]
                      [--executor slurm --slurm.partition P --slurm.gpus-per-job 1 --slurm.time 6:00:00 [--wait]]
    modicl status SWEEP_DIR
    modicl plot SWEEP_DIR
    modicl analyze RUN_DIR [--checkpoint best_ood|last] [--task 3,5] [--what attention pca …]

A configuration that cannot work, an unknown preset or flag, a missing checkpoint, or an output
directory that holds something else or is being trained by another process ends with one line on
stderr and exit code 2; a file that cannot be written (disk full, file too large, no permission) with
one line naming it and exit code 1. Output into a closed pipe (``| head``) is dropped quietly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from .config import PARTS, ConfigError, RunConfig, config_hash, preset, validate
from .sweep.slurm import SlurmOptions


@dataclass(frozen=True)
class TrainCommand:
    """Train one model on in-context modular arithmetic and evaluate it on the four sets."""

    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    preset: str = "quick"
    """named starting point: quick (CPU, p = 7, depth 4), quick-depth2 (CPU, depth 2, d_model 64), quick-memorize (quick with n_id = 8), quick-role (quick-depth2 with the role embedding, 4 000 steps), paper (PAPER.md §2.3, GPU), bench."""
    out: Path | None = None
    """run directory; None means runs/PRESET-CONFIGHASH."""
    resume: bool = False
    """continue from OUT/checkpoints/last."""
    overwrite: bool = False
    """delete OUT first if it holds a run."""
    progress: bool = True
    """show a progress bar."""


@dataclass(frozen=True)
class EvalCommand:
    """Re-evaluate a checkpoint of a run on the four sets and the validation o.o.d. set; write eval/CHECKPOINT.json and eval/kshot_CHECKPOINT.png."""

    run_dir: tyro.conf.Positional[Path]
    checkpoint: str = "best_ood"
    """checkpoint name: best_ood or last."""
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
class SweepCommand:
    """Run (or continue) a grid of runs: finished points are skipped, interrupted ones resumed, failed ones re-run."""

    spec: tyro.conf.Positional[str]
    """a built-in spec (phase-diagram, depth, quick-phase-diagram, …) or a TOML file."""
    out: Path | None = None
    """sweep directory; None means sweeps/SPEC-NAME."""
    axis: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """extra or replacement axis FIELD=V1,V2,… (e.g. n_id=8,16,32); repeat the flag for several."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """fixed override FIELD=VALUE for every point (e.g. train.steps=3000); repeat the flag for several."""
    dry_run: bool = False
    """list the grid points and their status; run nothing."""
    ensemble: bool = True
    """train points that differ only in their data together (--no-ensemble: every point on its own)."""
    workers: int = 1
    """runs at once, in separate processes sharing the CPU threads (2 on a 2-core machine: +18 %)."""
    progress: bool = True
    executor: Literal["local", "slurm"] = "local"
    """local: run here; slurm: submit the jobs as a SLURM job array (through submitit) and return."""
    wait: bool = False
    """with --executor slurm: follow the jobs with a progress bar until they end, then write the results table."""
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


@dataclass(frozen=True)
class StatusCommand:
    """Show the state of every point of a sweep: done, running, queued, interrupted, new, or failed with its error."""

    sweep_dir: tyro.conf.Positional[Path]


@dataclass(frozen=True)
class PlotCommand:
    """Draw a sweep's figures into SWEEP_DIR/plots: phase diagram, per-set heatmaps, o.o.d. accuracy vs n_id, training curves."""

    sweep_dir: tyro.conf.Positional[Path]


@dataclass(frozen=True)
class AnalyzeCommand:
    """Open up a trained model: attention maps, circle-of-circles PCA, kaleidoscope similarity, k-shot grids,
    ratio matching vs modular regression, label noise, logit lens; writes RUN_DIR/analysis/."""

    run_dir: tyro.conf.Positional[Path]
    checkpoint: str = "best_ood"
    """checkpoint name: best_ood or last."""
    task: str | None = None
    """probe task 'a,b' (n_var residues; default: the run's first o.o.d. task)."""
    what: tuple[str, ...] = ()
    context: str | None = None
    """k-shot grid context 'x,y;x,y;…' (default: distinct random pairs)."""
    shots: tuple[int, ...] = ()
    """k-shot grid shot counts (default 1, 2, n_ctx/2, n_ctx−1)."""
    device: str = "auto"
    seed: int = 0


def _flags(cls) -> list[str]:
    return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(cls)]


def _known_flags(command) -> list[str]:
    """Every flag ``command`` accepts, for 'did you mean' hints."""
    own = [fl for fl in _flags(command) if fl != "--config"]
    if "--slurm" in own:
        own.remove("--slurm")
        own += [f"--slurm.{fl[2:]}" for fl in _flags(SlurmOptions)]
    if "--config" not in _flags(command):
        return own
    flags = [f"--{part}.{fl[2:]}" for part, cls in PARTS.items() for fl in _flags(cls)]
    flags += [fl for fl in _flags(RunConfig) if fl[2:] not in PARTS]
    return flags + own


def _pop_preset(argv: list[str], default: str) -> tuple[str, list[str]]:
    rest, name, i = [], default, 0
    while i < len(argv):
        a = argv[i]
        if a == "--preset" and i + 1 < len(argv):
            name, i = argv[i + 1], i + 2
            continue
        if a.startswith("--preset="):
            name = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    return name, rest


def _parse(command, argv: list[str], default, prog: str):
    parsed, unknown = tyro.cli(command, args=argv, default=default, prog=prog, return_unknown_args=True)
    if unknown:
        bad = next((u for u in unknown if u.startswith("-")), unknown[0])
        known = _known_flags(command)
        close = difflib.get_close_matches(bad.split("=")[0].replace("_", "-"), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown option {bad!r}{hint} (see {prog} --help)")
    return parsed


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63 - 1:
        raise ConfigError(f"--seed {seed} must be an integer in [0, 2**63 - 2]")


def _reject_empty_out(argv: list[str]) -> None:
    """``--out ''`` would be the current directory; an empty path is an error."""
    for i, a in enumerate(argv):
        if a == "--out=" or (a == "--out" and i + 1 < len(argv) and not argv[i + 1].strip()):
            raise ConfigError("--out is an empty path; give a directory")


def cmd_train(argv: list[str]) -> int:
    from .metrics import PHASE_LABELS, format_table
    from .rundir import RunDir, clear_run
    from .train import train

    name, rest = _pop_preset(argv, "quick")
    base = preset(name)
    args = _parse(TrainCommand, rest, TrainCommand(config=base, preset=name), "modicl train")
    cfg = validate(args.config)
    _reject_empty_out(rest)
    out = args.out or Path("runs") / f"{name}-{config_hash(cfg)}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    if RunDir(out).holds_other_files():
        raise ConfigError(f"--out {out} is not empty and holds no modicl run; choose another directory "
                          "(--overwrite only replaces run directories)")
    if args.overwrite and out.exists():
        clear_run(out)  # under the run's lock: refused while another process trains it
    print(f"run directory: {out}")
    summary = train(cfg, out, resume=args.resume, progress=args.progress)
    print(f"\nfinal (step {summary['steps']}), 95 % intervals:")
    print(format_table(summary["final"], cfg.task.p))
    print(f"\nbest o.o.d. checkpoint (step {summary['best_ood']['step']}, selected on the validation o.o.d. tasks; "
          "test numbers):")
    print(format_table(summary["best_ood"], cfg.task.p))
    print(f"\nphase: {PHASE_LABELS[summary['phase']]} {summary['phase_pattern']} (i.d. train, i.d. test, o.o.d. train, "
          f"o.o.d. test; ✓ = novel-query last-position accuracy ≥ {cfg.phase_threshold}); at the best checkpoint: "
          f"{PHASE_LABELS[summary['phase_best_ood']]} {summary['phase_pattern_best_ood']}")
    print(f"wall time {summary['wall_s']:.0f} s, {summary['tokens_per_s']:,.0f} tokens/s ({summary['dtype']}, "
          f"threads={summary['threads']}, CPU kind {summary['cpu_kind']}); results in {out}")
    return 0


def cmd_eval(argv: list[str]) -> int:
    import torch

    from .evaluation import evaluate_run
    from .metrics import PHASE_LABELS, classify_phase, format_table, pattern_text
    from .plots import kshot_plot
    from .rundir import RunDir, load_checkpoint, write_json
    from .runtime import autocast_for, resolve_device, resolve_dtype

    args = _parse(EvalCommand, argv, tyro.MISSING_NONPROP, "modicl eval")
    if args.sequences < 1:
        raise ConfigError(f"--sequences {args.sequences} must be ≥ 1")
    _check_seed(args.seed)
    device = resolve_device(args.device)
    ck = load_checkpoint(args.run_dir, args.checkpoint, device)
    cfg = ck.config
    g = torch.Generator(device=device)
    g.manual_seed(args.seed)
    autocast = autocast_for(device, resolve_dtype(cfg.train.dtype, device))
    res = evaluate_run(ck.model, cfg, ck.tasks, sequences=args.sequences, generator=g, autocast=autocast)
    phase = classify_phase(res, cfg.phase_threshold)
    used = {name: r["n_sequences"] for name, r in res.items()}
    out = {"checkpoint": args.checkpoint, "step": ck.step, "sequences_requested": args.sequences,
           "sequences_per_set": used, "seed": args.seed, "phase": phase,
           "phase_pattern": pattern_text(res, cfg.phase_threshold), **res}
    evals = RunDir(args.run_dir).evals
    evals.mkdir(exist_ok=True)
    write_json(evals / f"{args.checkpoint}.json", out)
    kshot_plot({f"{args.checkpoint} step {ck.step}": res}, evals / f"kshot_{args.checkpoint}.png", p=cfg.task.p)
    print(f"{args.run_dir} checkpoint {args.checkpoint} (step {ck.step}); sequences used per set: "
          + ", ".join(f"{k} {v}" for k, v in used.items()))
    print(format_table(res, cfg.task.p))
    print("k-shot accuracy (o.o.d. test), k = shots before the query:", " ".join(f"{k}:{a:.2f}" for k, a in enumerate(res["ood_test"]["kshot"])))
    print(f"phase: {PHASE_LABELS[phase]} {out['phase_pattern']}; wrote {evals / (args.checkpoint + '.json')} and eval/kshot_{args.checkpoint}.png")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from .bench import benchmark

    name, rest = _pop_preset(argv, "bench")
    base = preset(name)
    args = _parse(BenchCommand, rest, BenchCommand(config=base, preset=name), "modicl bench")
    cfg = validate(args.config)
    if args.steps < 1 or args.ensemble < 0:
        raise ConfigError("--steps must be ≥ 1 and --ensemble ≥ 0")
    if args.ensemble > 0:
        from .bench import benchmark_ensemble

        results = [benchmark_ensemble(cfg, args.ensemble, args.backend, dtype=d, steps=args.steps) for d in args.dtypes]
    else:
        results = [benchmark(cfg, dtype=d, steps=args.steps) for d in args.dtypes]
    print(json.dumps(results, indent=1))
    return 0


def cmd_sweep(argv: list[str]) -> int:
    from .rundir import RunDir
    from .sweep import expand, load_spec, parse_assignment, point_dir, run_sweep

    args = _parse(SweepCommand, argv, tyro.MISSING_NONPROP, "modicl sweep")
    sets = {}
    for text in args.set:
        name, values = parse_assignment(text)
        if len(values) != 1:
            raise ConfigError(f"--set {text!r} gives {len(values)} values; use --axis for several")
        sets[name] = values[0]
    axes = dict(parse_assignment(t) for t in args.axis)
    spec = load_spec(args.spec, overrides=sets, axes=axes)
    _reject_empty_out(argv)
    out = args.out or Path("sweeps") / spec.name
    points = expand(spec)
    if args.dry_run:  # the same table as modicl status, SLURM jobs included
        from .sweep import format_status, sweep_status

        print(format_status(sweep_status(out, points)).replace(" points: ", f" points in {out}: ", 1))
        return 0
    if args.executor == "slurm":
        return _sweep_slurm(args, spec, out)
    print(f"sweep {spec.name}: {len(points)} points in {out}")
    report = run_sweep(spec, out, progress=args.progress, ensemble=args.ensemble, workers=args.workers)
    print(f"finished {len(report.finished)}, already done {len(report.skipped)}, failed {len(report.failed)}; "
          f"results in {out / 'results.csv'} (and .parquet)")
    _print_cells(out / "results.csv")
    for h, err in report.failed.items():
        print(f"  failed {h}: {err} (details in {RunDir(point_dir(out, h)).error})", file=sys.stderr)
    return 1 if report.failed else 0


def _print_cells(results: Path) -> None:
    """Per cell of the sweep: how many seeds reached each phase, and the seed-mean o.o.d. test accuracy."""
    import pandas as pd

    from .cells import format_cells, seed_cells

    if results.exists() and results.stat().st_size > 1:
        df = pd.read_csv(results)
        if len(df) and "phase" in df:
            print(format_cells(seed_cells(df)))


def _sweep_slurm(args: SweepCommand, spec, out: Path) -> int:
    from .sweep import format_status
    from .sweep.slurm import read_submissions, submit_sweep, wait_for_sweep

    if args.workers != 1:
        raise ConfigError("--workers is for the local executor; with --executor slurm use --slurm.cpus-per-job and --slurm.array-parallelism")
    subs = submit_sweep(spec, out, args.slurm, ensemble=args.ensemble)
    if not subs:
        print(f"sweep {spec.name}: nothing to submit in {out} (every point is done, queued or running); see modicl status {out}")
    else:
        n = sum(len(s.hashes) for s in subs)
        print(f"sweep {spec.name}: submitted {n} points as {len(subs)} SLURM jobs: {' '.join(s.job_id for s in subs)}")
        print(f"logs in {out / 'slurm'}; follow with: modicl status {out}")
    if not args.wait:
        return 0
    # follow every point's latest job, also those an earlier submission left queued or running
    try:
        rows = wait_for_sweep(out, sorted(set(read_submissions(out).values())), progress=args.progress)
    except KeyboardInterrupt:
        print(f"\nmodicl sweep: stopped following; the SLURM jobs keep running: modicl status {out}", file=sys.stderr)
        return 130
    print(format_status(rows))
    print(f"results in {out / 'results.csv'} (and .parquet)")
    _print_cells(out / "results.csv")
    unfinished = sum(r["state"] != "done" for r in rows)
    if unfinished:
        print(f"modicl sweep: {unfinished} of {len(rows)} points did not finish (see above and modicl status {out})", file=sys.stderr)
    return 1 if unfinished else 0


def cmd_status(argv: list[str]) -> int:
    from .sweep import format_status, sweep_status

    args = _parse(StatusCommand, argv, tyro.MISSING_NONPROP, "modicl status")
    print(format_status(sweep_status(args.sweep_dir)))
    return 0


def cmd_plot(argv: list[str]) -> int:
    from .sweep_plots import plot_sweep

    args = _parse(PlotCommand, argv, tyro.MISSING_NONPROP, "modicl plot")
    for path in plot_sweep(args.sweep_dir):
        print(path)
    return 0


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} {text!r} must be integers separated by commas") from None


def _analyze_command() -> type:
    """:class:`AnalyzeCommand` with ``--what`` choosing among the analyses registered in
    :data:`modicl.analyze.ANALYSES`, all of them by default (built when the command runs, so that the
    other commands do not import the analyses)."""
    from .analyze import ANALYSES

    names = tuple(ANALYSES)
    ns = {"__annotations__": {"what": tuple[Literal[names], ...]}, "what": names, "__doc__": AnalyzeCommand.__doc__,
          "__module__": AnalyzeCommand.__module__, "__qualname__": AnalyzeCommand.__qualname__}
    return dataclass(frozen=True)(type("AnalyzeCommand", (AnalyzeCommand,), ns))


def cmd_analyze(argv: list[str]) -> int:
    from .analyze import run_analyses

    args = _parse(_analyze_command(), argv, tyro.MISSING_NONPROP, "modicl analyze")
    _check_seed(args.seed)
    task = _ints(args.task, "--task") if args.task else None
    context = [_ints(c, "--context") for c in args.context.split(";")] if args.context else None
    res = run_analyses(args.run_dir, args.checkpoint, task, args.what, context, args.shots or None, args.device, args.seed)
    print(f"{args.run_dir} checkpoint {args.checkpoint} (step {res['step']}), probe task {tuple(res['task'])} "
          f"({res['task_membership']} task{', degenerate: a component is 0' if res['task_degenerate'] else ''})")
    for name, why in res["skipped"].items():
        print(f"skipped {name}: {why}")
    if res.get("probes", {}).get("subsampled"):
        print(f"attention / PCA / similarity on a random {res['probes']['used']} of the {res['probes']['of']} probe pairs (bounded memory)")
    if "attention" in res:
        named = [f"{h}={v['name']}" for h, v in res["attention"].items() if v["name"] != "diffuse"]
        print("heads:", ", ".join(named) or "all diffuse")
    if "pca" in res:
        b = res["pca"]["best_head"]
        c = res["pca"]["heads"][b]
        print(f"most circular head {b}: outer ring {c['outer_ring']:.2f}, inner rings {c['inner_rings']:.2f}, x separation {c['x_separation']:.2f}")
    if "kaleidoscope" in res:
        print("same-line minus different-line similarity of block outputs at z_k:",
              ", ".join(f"{b.removesuffix('_z')} {v['gap']:.2f}" for b, v in res["kaleidoscope"]["blocks"].items() if b.endswith("_z")))
    if "kshot" in res:
        print("k-shot grid accuracy (model / ratio matching):", ", ".join(
            f"{k}: {v['accuracy']:.2f}/{v['ratio_matching_accuracy']:.2f}" for k, v in res["kshot"].items() if k != "context"))
    if "algorithms" in res:
        c = res["algorithms"]["o.o.d."]
        print(f"o.o.d. last-shot accuracy: model {c['model'][-1]:.2f}, RM {c['ratio_matching'][-1]:.2f}, MR {c['modular_regression'][-1]:.2f}; "
              f"agreement with RM {c['agree_ratio_matching'][-1]:.2f}, with MR {c['agree_modular_regression'][-1]:.2f}")
    print(f"figures and analysis.json in {args.run_dir / 'analysis'}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "bench": cmd_bench, "sweep": cmd_sweep, "status": cmd_status, "plot": cmd_plot,
            "analyze": cmd_analyze}


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
    previous = {s: signal.signal(s, h) for s, h in
                ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _raise_interrupt))}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _StdoutGuard:
    """Stands in for sys.stdout while a command runs: once the reader of a pipe has gone (``modicl train |
    head -1``), output is dropped instead of raising, and the command finishes its work (the run's
    results are on disk; stdout is only a report)."""

    def __init__(self, stream):
        self.stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._broke()

    def _broke(self) -> None:
        self.broken = True
        _stdout_to_devnull()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _guard_stdout() -> Iterator[None]:
    guard = _StdoutGuard(sys.stdout)
    sys.stdout = guard
    try:
        yield
        guard.flush()  # inside the guard: a closed pipe shows here, not at interpreter exit
    finally:
        if sys.stdout is guard:
            sys.stdout = guard.stream


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again on a closed pipe."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"modicl: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        print(__doc__)
        return 0
    from .rundir import CheckpointError
    from .train import TrainingDiverged

    try:
        with _interrupt_on_signals(), _guard_stdout():
            return COMMANDS[argv[0]](argv[1:])
    except (ConfigError, CheckpointError) as e:
        print(f"modicl {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `modicl … | head`: the reader has gone; what we did is done
        _stdout_to_devnull()
        return 0
    except OSError as e:  # a file that cannot be written or read: disk full, file too large, no permission
        where = f"{e.filename}: " if e.filename else ""
        print(f"modicl {argv[0]}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except TrainingDiverged as e:
        print(f"modicl {argv[0]}: training diverged: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        how = {"train": "the same command plus --resume", "sweep": "the same command (finished points are skipped)"}
        print(f"\nmodicl {argv[0]}: interrupted; " + (f"the last checkpoint is kept, continue with {how[argv[0]]}"
              if argv[0] in how else "nothing was written"), file=sys.stderr)
        return 130


def entry() -> None:
    """The ``modicl`` command (and ``python -m modicl``): a process of its own, so it may keep freed
    memory for reuse (:mod:`modicl.allocator`), which library calls and :func:`main` leave alone."""
    from .allocator import keep_freed_memory

    if len(sys.argv) > 1 and sys.argv[1] in ("train", "sweep", "bench"):
        keep_freed_memory()
    sys.exit(main())
