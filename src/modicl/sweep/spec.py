"""Sweep specs: a preset, fixed overrides and axes; config field paths; the grid points; the built-ins.

A :class:`SweepSpec` is plain data (written to ``OUT/spec.json``, or read from TOML by
:func:`load_spec`); :func:`expand` turns it into validated :class:`Point` s, each named by the hash of
its config without the execution-only fields (:func:`point_hash`), so the same point is the same run
directory on any machine. :data:`BUILTIN` holds the paper's grids (PAPER.md §3) and their reductions
for 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PARTS, ConfigError, RunConfig, from_dict, validate
from ..fields import without_execution
from ..hashing import config_hash
from ..presets import preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs.

    Attributes:
        name: shown in messages and written to ``OUT/spec.json``.
        preset: the starting config (see ``modicl.presets.PRESETS``).
        set: field → value applied to every point.
        axes: field → list of values; the grid is their product, in the order given.
        zip: fields whose equal-length value lists vary together as one more axis (e.g. n_id with a
            batch size that stays a multiple of it).
        base: a starting config that replaces ``preset`` (for notebook use; not expressible in TOML).
    """

    name: str
    preset: str = "quick"
    set: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    base: RunConfig | None = None


@dataclass(frozen=True)
class Point:
    """One grid point: its axis values, resolved config and directory name."""

    axes: dict[str, Any]
    config: RunConfig
    hash: str


def _field_types() -> dict[str, Any]:
    types = {}
    for part, cls in PARTS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            types[f"{part}.{f.name}"] = hints[f.name]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name not in PARTS:
            types[f.name] = hints[f.name]
    return types


def resolve_field(name: str) -> str:
    """``n_id`` or ``task.n_id`` → ``task.n_id``. Raises ConfigError for an unknown or ambiguous name."""
    types = _field_types()
    name = name.replace("-", "_")
    if name in types:
        return name
    matches = [k for k in types if k.split(".")[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"field {name!r} is ambiguous; write one of {', '.join(matches)}")
    import difflib

    short = {k.split(".")[-1]: k for k in types}
    close = difflib.get_close_matches(name, list(types) + list(short), n=1)
    hint = f"; did you mean {short.get(close[0], close[0])}?" if close else ""
    raise ConfigError(f"unknown config field {name!r}{hint}")


def _coerce(path: str, value: Any) -> Any:
    tp = _field_types()[path]
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path} = {value!r}; choose one of {', '.join(map(str, typing.get_args(tp)))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} = {value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} = {value!r} must be a number")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{path} = {value!r} must be a string")
    return value


def with_field(cfg: RunConfig, path: str, value: Any) -> RunConfig:
    """A copy of ``cfg`` with the (resolved) field ``path`` set to ``value``, type-checked."""
    path = resolve_field(path)
    value = _coerce(path, value)
    if "." not in path:
        return dataclasses.replace(cfg, **{path: value})
    part, name = path.split(".")
    return dataclasses.replace(cfg, **{part: dataclasses.replace(getattr(cfg, part), **{name: value})})


def point_hash(cfg: RunConfig) -> str:
    """Hash of ``cfg`` with the execution-only fields at their defaults: the point's directory name."""
    return config_hash(without_execution(cfg))


def point_dir(out_dir: str | Path, hash: str) -> Path:
    """The run directory of the point ``hash`` in the sweep directory ``out_dir``: ``OUT/runs/HASH``."""
    return Path(out_dir) / "runs" / hash


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand(spec: SweepSpec) -> list[Point]:
    """The grid points of ``spec``, validated. Raises ConfigError (one line, naming the point) for an
    unknown preset or field, an empty axis, a mistyped value, a config that cannot work, or two
    points with the same config."""
    base = spec.base if spec.base is not None else preset(spec.preset)
    for path, value in spec.set.items():
        base = with_field(base, path, value)
    axes: dict[str, list[Any]] = {}
    for name, values in spec.axes.items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"axis {name!r} of sweep {spec.name!r} must be a list of values, got {values!r}")
        if len(values) == 0:
            raise ConfigError(f"axis {name!r} of sweep {spec.name!r} is empty; give it at least one value")
        axes[resolve_field(name)] = list(values)
    zipped = {resolve_field(k): list(v) if isinstance(v, (list, tuple)) else v for k, v in spec.zip.items()}
    lengths = {len(v) if isinstance(v, list) else -1 for v in zipped.values()}
    if zipped and (len(lengths) != 1 or lengths & {0, -1}):
        raise ConfigError(
            f"the zip axes of sweep {spec.name!r} ({', '.join(zipped)}) need non-empty value lists of one length"
        )
    overlap = set(axes) & set(zipped)
    if overlap:
        raise ConfigError(
            f"{', '.join(sorted(overlap))} is both an axis and a zip axis of sweep {spec.name!r}; keep one "
            "(--axis cannot replace a zip axis: write the grid as a TOML spec)"
        )
    # A fixed value that an axis then overwrites would be ignored without a word.
    fixed = {resolve_field(k): k for k in spec.set}
    clash = sorted(set(fixed) & (set(axes) | set(zipped)))
    if clash:
        f = clash[0]
        hint = f"--axis {f}=VALUE" if f in axes else "a TOML spec without that zip axis"
        raise ConfigError(
            f"{f} is fixed by set ({spec.set[fixed[f]]!r}) and is also an axis of sweep {spec.name!r}; "
            f"to fix it, use {hint} instead"
        )
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    points: list[Point] = []
    seen: dict[str, str] = {}
    for combo, extra in itertools.product(itertools.product(*axes.values()), zip_rows):
        point = {**dict(zip(axes, combo)), **extra}
        cfg = base
        for path, value in point.items():
            cfg = with_field(cfg, path, value)
        label = ", ".join(f"{k}={_fmt(v)}" for k, v in point.items()) or "the base config"
        try:
            validate(cfg)
        except ConfigError as e:
            raise ConfigError(f"grid point {label}: {e}") from None
        h = point_hash(cfg)
        if h in seen:
            raise ConfigError(f"grid points {seen[h]} and {label} are the same config; remove the duplicate axis value")
        seen[h] = label
        points.append(Point(point, cfg, h))
    return points


def load_spec(
    source: str | Path, *, overrides: dict[str, Any] | None = None, axes: dict[str, list[Any]] | None = None
) -> SweepSpec:
    """A built-in spec (see :data:`BUILTIN`) or a TOML file, with optional extra ``overrides`` and axes
    (which replace axes of the same field). Raises ConfigError for a missing or malformed file or
    unknown top-level keys."""
    if str(source) in BUILTIN:
        spec = BUILTIN[str(source)]
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"sweep spec {source!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
        unknown = set(data) - {"name", "preset", "set", "axes", "zip"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown keys {sorted(unknown)}; a spec has name, preset, [set], [axes] and [zip]"
            )
        if not all(isinstance(data.get(k, {}), dict) for k in ("set", "axes", "zip")):
            raise ConfigError(f"{path}: [set], [axes] and [zip] must be tables")
        spec = SweepSpec(
            name=data.get("name", path.stem),
            preset=data.get("preset", "quick"),
            set=dict(data.get("set", {})),
            axes=dict(data.get("axes", {})),
            zip=dict(data.get("zip", {})),
        )
    if overrides:
        spec = dataclasses.replace(spec, set={**spec.set, **overrides})
    if axes:
        merged = {resolve_field(k): v for k, v in spec.axes.items()}
        merged.update({resolve_field(k): v for k, v in axes.items()})
        # An axis given here also replaces the spec's fixed value of that field (phase-diagram fixes depth 6).
        kept = {k: v for k, v in spec.set.items() if resolve_field(k) not in merged}
        spec = dataclasses.replace(spec, set=kept, axes=merged)
    return spec


def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """``"n_id=8,16,32"`` → ``("n_id", [8, 16, 32])``; values are parsed as TOML scalars (bare words as
    strings). Raises ConfigError for text without ``=`` or an empty value list."""
    if "=" not in text:
        raise ConfigError(f"{text!r} is not FIELD=VALUE[,VALUE…]")
    name, raw = text.split("=", 1)
    values = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(tomllib.loads(f"v = {item}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(item)
    if not values:
        raise ConfigError(f"{name.strip()!r} has no values in {text!r}")
    return name.strip(), values


# ---------------------------------------------------------------------------------------- built-ins


def _quick_grid(name: str, preset_name: str, seeds: list[int]) -> SweepSpec:
    """The reduced CPU phase diagram's 4 n_id × 3 α grid on a quick preset (batch zipped with n_id), each
    cell over ``seeds``. The seed axis comes first, so a sweep stopped part way holds whole seeds."""
    return SweepSpec(
        name,
        preset=preset_name,
        axes={"seed": seeds, "task.alpha": [0.4, 0.6, 0.8]},
        zip={"task.n_id": [8, 16, 24, 32], "train.batch_size": [64, 64, 72, 64]},
    )


BUILTIN: dict[str, SweepSpec] = {
    # PAPER.md §3 Fig. 1b / Fig. 3 (depth 6 in the paper; the depth is an axis to override): 7 × 7 runs of
    # the paper config, for a GPU.
    "phase-diagram": SweepSpec(
        "phase-diagram",
        preset="paper",
        set={"model.n_layers": 6},
        axes={"task.n_id": [8, 16, 32, 64, 128, 256, 512], "task.alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
    ),
    # The phase diagram reduced to fit 2 CPU cores, with seeds (a cell is a distribution of outcomes): the
    # quick-muon preset (p = 7, depth 2, d_model 64, 4 000 steps), n_id 8…32 (16 %-65 % of p²) × α 0.4, 0.6, 0.8
    # × seeds 1-3: 36 runs of ≈ 2 min, two at a time (docs/REPRODUCTION.md). The batch stays a multiple of
    # n_id. (n_id 40 cannot be placed by the rectangular rule at p = 7 for every seed.)
    "quick-phase-diagram": _quick_grid("quick-phase-diagram", "quick-muon", [1, 2, 3]),
    # The same grid on the depth-4 AdamW quick preset (6 000 steps, ≈ 6 min a run), one seed: a starting point.
    "quick-phase-diagram-d4": _quick_grid("quick-phase-diagram-d4", "quick", [2]),
    # The depth law on the CPU preset (PAPER.md §3): quick-muon (n_id 32, α 0.8) at depths 1, 2, 4, 6, 5 seeds
    # each. Depth 2 is the same config, hence the same run directory name, as the n_id 32, α 0.8 cell above.
    # Every run keeps a checkpoint history (an execution setting: the names stay), so a transient o.o.d.
    # phase can be opened up or branched from afterwards.
    "quick-depth": SweepSpec(
        "quick-depth",
        preset="quick-muon",
        set={"train.keep_checkpoints": "log+every:1000"},
        axes={"seed": [1, 2, 3, 4, 5], "model.n_layers": [1, 2, 4, 6]},
    ),
    # `make demo`: two seeds of the quick-p11 preset side by side (one thread each, both cores), so the demo
    # reports how many seeds land in each phase rather than one seed's story.
    "demo": SweepSpec("demo", preset="quick-p11", axes={"seed": [1, 2]}),
    # PAPER.md §3 depth study: o.o.d. accuracy against n_id for depths 1, 2, 4, 6 at α = 0.6, for a GPU.
    "depth": SweepSpec(
        "depth",
        preset="paper",
        set={"task.alpha": 0.6},
        axes={"model.n_layers": [1, 2, 4, 6], "task.n_id": [32, 64, 128, 256, 512]},
    ),
}


def load_sweep(out_dir: str | Path) -> tuple[SweepSpec, list[Point]]:
    """The spec and grid points of the sweep in ``out_dir`` (from its ``spec.json``).
    Raises ConfigError when ``out_dir`` holds no sweep or a spec this modicl version cannot read."""
    path = Path(out_dir) / "spec.json"
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a sweep directory (no spec.json); give the directory `modicl sweep` wrote")
    d = json.loads(path.read_text())
    try:
        base = from_dict(d.pop("base")) if d.get("base") is not None else None
        spec = SweepSpec(**{**d, "base": base})
    except TypeError as e:
        raise ConfigError(f"{path} does not match this modicl version: {e}") from None
    return spec, expand(spec)
