"""The import graph of the package, read from the source (every import: module level, inside functions
and under TYPE_CHECKING): no cycle, and no arrow from a stage to a later one."""

import ast
from pathlib import Path

import modicl

SRC = Path(modicl.__file__).parent

# The stages in the order the data flows; a module may import its own stage and earlier ones only. A
# trailing ".*" names a subpackage and all its modules. Every module must be listed: a new one is placed here.
STAGES = [
    ("base", {"version", "signals", "staging", "streams", "progress", "allocator", "compiling", "family"}),
    ("configs", {"history", "config", "fields", "runlock", "runtime", "hashing", "presets"}),
    ("tasks, data, model", {"tasks", "data", "algorithms", "model", "muon"}),
    ("measures and run directory", {"metrics", "phases", "circuits", "rundir", "figures"}),
    ("evaluation, steps, report", {"evaluation", "steps", "memory", "report.*"}),
    ("training", {"training", "branch", "ensemble", "bench"}),
    ("sweeps and analyses", {"sweep.*", "analysis.*"}),
    ("command line", {"cli.*", "__main__", ""}),
]


def module_names() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("modicl"):
                target = node.module.removeprefix("modicl").lstrip(".")
            else:
                continue
            for alias in node.names:  # "from . import measures" imports a module
                sub = f"{target}.{alias.name}".lstrip(".")
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("modicl").lstrip(".") for a in node.names if a.name.startswith("modicl")}
    return (out & known) - {name}


def stage_of(name: str) -> int:
    for i, (_, members) in enumerate(STAGES):
        for m in members:
            if name == m or (m.endswith(".*") and (name == m[:-2] or name.startswith(m[:-1]))):
                return i
    raise AssertionError(f"module modicl.{name} has no stage in tests/test_layout.py STAGES")


def graph() -> dict[str, set[str]]:
    mods = module_names()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_import_goes_to_the_same_or_an_earlier_stage():
    g = graph()
    upward = [
        f"modicl.{a} ({STAGES[stage_of(a)][0]}) imports modicl.{b} ({STAGES[stage_of(b)][0]})"
        for a in sorted(g)
        for b in sorted(g[a])
        if stage_of(b) > stage_of(a)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    g, state, path, cycles = graph(), {}, [], []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(g[u]):
            if state.get(v) == "open":
                cycles.append(" → ".join(path[path.index(v) :] + [v]))
            elif v not in state:
                visit(v)
        path.pop()
        state[u] = "done"

    for u in sorted(g):
        if u not in state:
            visit(u)
    assert cycles == []


def test_the_graph_reader_sees_lazy_and_type_checking_imports():
    # hand-checked edges of three kinds: in a function body, under TYPE_CHECKING, and "from . import module"
    g = graph()
    assert "report.figures" in g["cli.commands"]  # inside cmd_eval
    assert "training" in g[""]  # the package's TYPE_CHECKING block
    assert {"analysis.measures", "analysis.figures"} <= g["analysis.registry"]
