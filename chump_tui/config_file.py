"""The settings file: what an operator would otherwise type every time.

``$XDG_CONFIG_HOME/chump-tui/config.toml`` (``~/.config/chump-tui/config.toml``), or the
file ``--config`` names. Its keys are flag names without the dashes (``max-parallel = 4``;
``max_parallel`` too); each value goes through the same check as the flag, and a flag on
the command line wins over it. ``--print-config`` shows every setting with where it came
from. Settings that only make sense for one run (the backlog, ``--execute``, ``--demo``)
and ``--insecure-broker`` (a choice to make each time) are not read from the file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from chump_tui.outside_text import visible

NOT_IN_FILE = {"backlog", "dry_run", "watch", "self_test", "demo", "repo_root", "no_tui",
               "read_only", "insecure_broker", "config", "print_config", "help"}
MAX_CONFIG_BYTES = 1024 * 1024


def config_path(args: Sequence[str], environ: os._Environ[str] | dict[str, str]) -> Path:
    """``--config PATH`` from the command line, else the XDG location."""
    for n, arg in enumerate(args):
        if arg == "--config" and n + 1 < len(args):
            return Path(args[n + 1])
        if arg.startswith("--config="):
            return Path(arg.partition("=")[2])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chump-tui" / "config.toml"


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Settings a file may give, by key (the long flag without its dashes)."""
    found = {}
    for action in parser._actions:  # argparse keeps no public list of them
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest not in NOT_IN_FILE:
            found[longs[0][2:]] = action
    return found


def apply_config_file(parser: argparse.ArgumentParser, args: Sequence[str],
                      environ: os._Environ[str] | dict[str, str] = os.environ) -> dict[str, str]:
    """Make the file's values the parser's defaults; returns dest -> where each came from.
    A bad file is the parser's one-line error (exit 2)."""
    path = config_path(args, environ)
    explicit = any(a == "--config" or a.startswith("--config=") for a in args)
    try:
        if path.is_dir() or os.path.getsize(path) > MAX_CONFIG_BYTES:
            parser.error(f"{path}: not a settings file (a directory, or over 1 MiB)")
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            parser.error(f"{path}: no such settings file")
        return {}
    except OSError as exc:
        parser.error(f"{path}: cannot read ({exc.strerror or exc})")
    import tomllib

    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        parser.error(f"{path}: {exc}")
    actions = _actions(parser)
    defaults: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key, value in table.items():
        action = actions.get(key.replace("_", "-"))
        if action is None:
            parser.error(f"{path}: unknown setting {key!r} (settings are flag names: "
                         "max-parallel, notify, budget-usd, …; see --help)")
        try:
            defaults[action.dest] = _value(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            parser.error(f"{path}: setting {key!r}: {exc}")
        sources[action.dest] = str(path)
    parser.set_defaults(**defaults)
    return sources


def _value(action: argparse.Action, value: object) -> object:
    """A file's value checked as the flag's would be."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {type(value).__name__}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(action, item) for item in items]
    return _one(action, value)


def _one(action: argparse.Action, value: object) -> object:
    if isinstance(value, bool | dict | list):
        raise TypeError(f"expected a number or a string, got {type(value).__name__}")
    text = str(value)
    converted = action.type(text) if callable(action.type) else text
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"choose from {', '.join(map(str, action.choices))}, got {text!r}")
    return converted


def print_config(parser: argparse.ArgumentParser, ns: argparse.Namespace,
                 sources: dict[str, str], args: Sequence[str]) -> None:
    """Every setting as ``key = value  # where from`` (lines a settings file could take)."""
    given = _given_on_command_line(parser, args)
    out = sys.stdout
    for key, action in sorted(_actions(parser).items()):
        dest = action.dest
        value = getattr(ns, dest, None)
        source = "flag" if dest in given else sources.get(dest, "default")
        if dest == "harness" and source == "default" and os.environ.get("CHUMP_HARNESS"):
            source = "$CHUMP_HARNESS"
        if value is None or value == []:
            line = f"# {key} is not set  # {source}"
        else:
            line = f"{key} = {_toml(dest, value)}  # {source}"
        out.write(visible(line) + "\n")


def _given_on_command_line(parser: argparse.ArgumentParser, args: Sequence[str]) -> set[str]:
    options = parser._option_string_actions  # argparse keeps no public map of them
    given = set()
    for arg in args:
        if arg == "--":
            break
        action = options.get(arg.partition("=")[0])
        if action is not None:
            given.add(action.dest)
    return given


def _toml(dest: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if dest == "notify_cmd" and isinstance(value, list):  # as it would be typed
        import shlex

        return _toml(dest, shlex.join(value))
    if isinstance(value, tuple):  # notify's events: one comma list, as typed
        return _toml(dest, ",".join(map(str, value)))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(dest, v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
