"""Parsing the ``modicl`` command line: flags generated from the config dataclasses, the preset flag read
first, one-line errors with "did you mean" hints. Used by every command module (:mod:`modicl.cli`,
:mod:`modicl.cli.sweep`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io

import tyro

from ..config import PARTS, ConfigError, RunConfig


def flags(cls) -> list[str]:
    """The flags of dataclass ``cls``'s fields, as tyro spells them (``--n-id``)."""
    return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(cls)]


def known_flags(command) -> list[str]:
    """Every flag ``command`` accepts, for 'did you mean' hints."""
    own = [fl for fl in flags(command) if fl != "--config"]
    for f in dataclasses.fields(command):  # nested options (e.g. a remote executor's): --NAME.FIELD
        if isinstance(f.type, type) and dataclasses.is_dataclass(f.type) and f.name != "config":
            own.remove(f"--{f.name}")
            own += [f"--{f.name}.{fl[2:]}" for fl in flags(f.type)]
    if "--config" not in flags(command):
        return own
    config = [f"--{part}.{fl[2:]}" for part, cls in PARTS.items() for fl in flags(cls)]
    config += [fl for fl in flags(RunConfig) if fl[2:] not in PARTS]
    return config + own


def pop_preset(argv: list[str], default: str) -> tuple[str, list[str]]:
    """(the ``--preset`` value or ``default``, ``argv`` without it): the preset sets the defaults that the
    other flags override, so it is read first."""
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


def peek_flag(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), leaving ``argv`` as it is; None when absent."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def parse(command, argv: list[str], default, prog: str):
    """``argv`` parsed into the dataclass ``command`` (tyro) on top of ``default``. Raises ConfigError for
    an unknown option, with the closest known flag as a hint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed, unknown = tyro.cli(command, args=argv, default=default, prog=prog, return_unknown_args=True)
    except SystemExit as e:
        if not e.code:  # --help
            raise
        raise ConfigError(_tyro_message(err.getvalue(), prog)) from None
    if unknown:
        bad = next((u for u in unknown if u.startswith("-")), unknown[0])
        known = known_flags(command)
        close = difflib.get_close_matches(bad.split("=")[0].replace("_", "-"), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown option {bad!r}{hint} (see {prog} --help)")
    return parsed


def _tyro_message(text: str, prog: str) -> str:
    """tyro's boxed error (title, message, rule, help hint) as one line: the message, then where help is."""
    # The box is drawn in Unicode on a UTF-8 stdout and in ASCII (| + -) otherwise.
    lines = [ln.strip().strip("│╭╮╰╯─|+ ").strip() for ln in text.splitlines()]
    body: list[str] = []
    for ln in lines[1:]:  # the first line is the box's title
        if not ln or set(ln) <= set("─-"):
            if body:
                break
            continue
        body.append(ln)
    msg = " ".join(body) or (lines[0] if lines else "invalid arguments")
    return f"{' '.join(msg.split())} (see {prog} --help)"


def reject_empty_out(argv: list[str]) -> None:
    """``--out ''`` would be the current directory; an empty path is an error."""
    for i, a in enumerate(argv):
        if a == "--out=" or (a == "--out" and i + 1 < len(argv) and not argv[i + 1].strip()):
            raise ConfigError("--out is an empty path; give a directory")
