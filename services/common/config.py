"""Typed entry-point arguments: one dataclass per entry point, parsed by tyro.

Every entry point follows the same contract (see README "Conventions"):
bad arguments print one line naming the problem and exit with code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from typing import Any, TypeVar

import tyro

T = TypeVar("T")

EXIT_BAD_ARGS = 2


class ConfigError(ValueError):
    """A bad argument value; the message names the argument and the problem."""


def _first_message(tyro_output: str) -> str:
    """Pull the one informative line out of tyro's boxed error message."""
    lines = [ln.strip() for ln in tyro_output.splitlines()]
    lines = [ln for ln in lines if ln and set(ln) != {"-"} and set(ln) != {"─"}]
    # lines[0] is the box title ("Value error"), lines[1] the message.
    for ln in lines[1:]:
        if not ln.lower().startswith(("for full helptext", "argument helptext")):
            return ln
    return lines[0] if lines else "invalid arguments"


def fail(prog: str, message: str) -> None:
    """Print ``prog: error: message`` on one line and exit 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_ARGS)


def parse(cls: type[T], argv: list[str] | None, prog: str) -> T:
    """Parse ``argv`` into ``cls`` and run its ``validate()``; exit 2 with one line on error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        return tyro.cli(cls, args=argv, prog=prog)  # prints help, exits 0
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            args = tyro.cli(cls, args=argv, prog=prog)
    except SystemExit as exc:
        if exc.code in (0, None):
            print(buf.getvalue(), end="")
            raise
        fail(prog, _first_message(buf.getvalue()))
    return validated(args, prog)


def validated(args: T, prog: str = "dojo") -> T:
    """Run ``args.validate()`` if it exists, turning ConfigError into the one-line exit."""
    check = getattr(args, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            fail(prog, str(exc))
    return args


def rebuild(cls: type[T], overrides: dict[str, Any]) -> T:
    """Rebuild an Args dataclass from a dict (Ray Tune trial configs): unknown keys fail loudly."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown config keys for {cls.__name__}: {', '.join(unknown)}")
    args = dataclasses.replace(cls(), **overrides)
    check = getattr(args, "validate", None)
    if check is not None:
        check()
    return args


def to_dict(args: Any) -> dict[str, Any]:
    """The resolved arguments as JSON-safe data (written to config.json)."""
    return json.loads(json.dumps(dataclasses.asdict(args), default=str))


def require(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless cond holds."""
    if not cond:
        raise ConfigError(message)


def resolve_auto_resume(args: Any, has_state: bool) -> None:
    """``--auto-resume``: set ``args.resume`` to whether the run-dir holds state to resume (logged when it does)."""
    if getattr(args, "auto_resume", False) and args.resume != has_state:
        args.resume = has_state
        if has_state:
            import logging

            logging.getLogger("dojo").info("--auto-resume: --run-dir %s holds a run; resuming it", args.run_dir)
