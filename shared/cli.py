"""One command line for every verb of every service: `python -m services.<svc> <verb> --config FILE key=value ...`.

Each service lists its verbs in `services/<svc>/verbs.py` as `Verb(config class, "module:function", summary)` and its
`__main__.py` calls `run_cli(<svc>, VERBS, argv)`. This module then does the same for every verb:

- `--config FILE` names the job's YAML; `a.b=value` words override it (values are YAML scalars or lists);
- `--help` (or `-h`) lists the verbs, or a verb's config keys with their defaults and comments;
- the config is loaded and checked (types, ranges, required keys) before any heavy import;
- an error caused by the user's input (`shared.errors.InputError`: a config, a data file, a missing input) is one line
  `<svc> <verb>: error: <what and where>; fix: <what to do>` with exit status 2, never a traceback; a full disk or
  an unwritable folder is one line with exit status 1.

The work function is imported only when its verb runs (torch and friends load only then) and receives the config.
It returns None (success) or an exit status.
"""
from __future__ import annotations

import ast
import dataclasses
import errno
import functools
import importlib
import inspect
import io
import os
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from shared.config import REQUIRED, ConfigError, defaults_dict, load_config, to_dict
from shared.errors import InputError

# OS errors the user can fix, shown as one line: the machine's (space, permissions; exit 1) and a bad path (exit 2).
USER_OS_ERRORS = {errno.ENOSPC: ("free space on that disk or choose another folder", 1),
                  errno.EDQUOT: ("free space (disk quota exceeded) or choose another folder", 1),
                  errno.EROFS: ("choose a writable folder (it is on a read-only file system)", 1),
                  errno.EACCES: ("choose a folder you may write to, or fix its permissions", 1),
                  errno.EPERM: ("choose a folder you may write to, or fix its permissions", 1),
                  errno.ELOOP: ("remove the symbolic-link loop", 2),
                  errno.ENAMETOOLONG: ("use a shorter path", 2),
                  errno.EISDIR: ("give a file, not a folder", 2),
                  errno.ENOTDIR: ("give a folder, not a file", 2)}


@dataclass(frozen=True)
class Verb:
    """A runnable job: its settings class, the function that runs it (imported lazily) and a one-line summary."""

    config: type
    run: str  # "package.module:function"; called with the loaded config
    summary: str


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(prog: str, error: BaseException) -> tuple[str, int]:
    """The one line (and exit status) shown for an error the user can fix; ('', 0) for anything else.

    `prog` is "<svc> <verb>" (or "<svc>" before the verb is known)."""
    if isinstance(error, InputError):
        fix = error.fix or error.default_fix(prog)
        return f"{prog}: error: {one_line(error.message)}; fix: {one_line(fix)}", 2
    if isinstance(error, FileNotFoundError):  # a missing input named by our own code or by open()
        what = f"{error.filename}: no such file or folder" if error.filename else one_line(str(error))
        what, _, fix = what.partition("; ")  # our messages say the fix after the first "; "
        return f"{prog}: error: {what}; fix: {fix or 'check the path in the config or on the command line'}", 2
    if isinstance(error, OSError) and error.errno in USER_OS_ERRORS:
        where = error.filename or "a file"
        fix, status = USER_OS_ERRORS[error.errno]
        return f"{prog}: error: {where}: {error.strerror or error}; fix: {fix}, then rerun (finished work is kept)", status
    return "", 0


def _usage(svc: str, verbs: dict[str, Verb], default: str | None) -> str:
    width = max(map(len, verbs))
    lines = [f"usage: python -m services.{svc} <verb> --config FILE [key=value ...]",
             f"       python -m services.{svc} <verb> --help      (the verb's config keys, defaults and comments)",
             "", "verbs:"]
    lines += [f"  {name:<{width}}  {verb.summary}" + ("  (the default verb)" if name == default else "")
              for name, verb in verbs.items()]
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    """A value as it is written in YAML or on the command line."""
    if value == REQUIRED:
        return "(required)"
    if value is None or isinstance(value, (bool, list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    return repr(value) if isinstance(value, str) else str(value)


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field's help text: the `# comment` on its line(s), after the comment lines just above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out = {}
    body = ast.parse(source).body[0].body
    for node in body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above, line = [], node.lineno - 1
        while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        text = " ".join(above + trailing)
        if text:
            out[node.target.id] = text
    return out


def _comments(cls: type) -> dict[str, str]:
    """Field help of `cls` and of the settings classes it extends (the nearest definition wins)."""
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        out.update(field_comments(klass))
    return out


def describe_keys(cls: type, values: dict, prefix: str = "") -> list[str]:
    """`key = value  # comment` for every field of `cls` (nested dataclasses as `section.key`)."""
    lines = []
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key, tp, value = prefix + f.name, hints[f.name], values.get(f.name)
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
            typing.Union, types.UnionType) else [tp]
        nested = next((a for a in inner if dataclasses.is_dataclass(a)), None)
        if nested is not None and isinstance(value, dict):
            doc = one_line((nested.__doc__ or "").split("\n\n")[0])
            lines.append(f"  {key}.*" + (f"  -- {doc}" if doc and not doc.startswith(nested.__name__ + "(") else ""))
            lines += describe_keys(nested, value, key + ".")
            continue
        comment = comments.get(f.name, "")
        choices = next((typing.get_args(a) for a in inner if typing.get_origin(a) is typing.Literal), None)
        if choices:
            comment = f"one of {' | '.join(map(str, choices))}" + (f"; {comment}" if comment else "")
        lines.append(f"  {key} = {_format_value(value)}" + (f"  # {comment}" if comment else ""))
    return lines


def _verb_help(svc: str, name: str, verb: Verb, config_path: str | None, overrides: list[str]) -> str:
    cls = verb.config
    source = "defaults"
    try:
        values = to_dict(load_config(cls, config_path, overrides, check_required=False)) if config_path else None
        source = f"values from {config_path}" if config_path else source
    except ConfigError as e:
        values, source = None, f"defaults ({config_path} does not load: {one_line(e.message)})"
    if values is None:
        values = defaults_dict(cls)
    doc = inspect.cleandoc(cls.__doc__ or "")
    head = [f"usage: python -m services.{svc} {name} --config FILE [key=value ...]", "", verb.summary]
    if doc and not doc.startswith(cls.__name__ + "("):
        head += ["", doc]
    return "\n".join(head + ["", f"config keys ({source}; override any with key=value):"]
                     + describe_keys(cls, values))


def parse_argv(argv: list[str]) -> tuple[str | None, list[str], list[str], bool]:
    """(config path, overrides, other words, help asked) of a verb's arguments."""
    config, overrides, words, want_help = None, [], [], False
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            want_help = True
        elif arg == "--config":
            config = next(it, None)
            if config is None:
                raise ConfigError("--config needs a path", fix="write --config configs/<service>/<job>.yaml")
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg}",
                              fix="the only options are --config FILE and --help; settings are key=value words")
        elif "=" in arg:
            overrides.append(arg)
        else:
            words.append(arg)
    return config, overrides, words, want_help


def run_cli(svc: str, verbs: dict[str, Verb], argv: list[str], default: str | None = None,
            renamed: dict[str, str] | None = None) -> int:
    """Parse `argv` (after `python -m services.<svc>`), run the verb, and turn input errors into one line."""
    try:
        return _run_cli(svc, verbs, argv, default, renamed)
    except BrokenPipeError:  # `... --help | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run_cli(svc: str, verbs: dict[str, Verb], argv: list[str], default: str | None,
             renamed: dict[str, str] | None) -> int:
    renamed = renamed or {}
    prog = f"{svc}"
    try:
        if argv[:1] in (["-h"], ["--help"]):  # the service's verbs (a default verb's keys: `<verb> --help`)
            print(_usage(svc, verbs, default))
            return 0
        verb_name = argv[0] if argv and not argv[0].startswith("-") and "=" not in argv[0] else default
        rest = argv[1:] if argv and verb_name == argv[0] else argv
        if verb_name is None or (not argv and default is None):
            print(_usage(svc, verbs, default), file=sys.stderr)
            return 2
        if verb_name in renamed:
            raise ConfigError(f"the verb {verb_name!r} was renamed",
                              fix=f"use `python -m services.{svc} {renamed[verb_name]} ...`")
        if verb_name not in verbs:
            raise ConfigError(f"unknown verb {verb_name!r}", fix=f"choose one of {', '.join(verbs)} "
                              f"(`python -m services.{svc} --help` lists them)")
        prog = f"{svc} {verb_name}"
        verb = verbs[verb_name]
        config_path, overrides, words, want_help = parse_argv(rest)
        if want_help:
            print(_verb_help(svc, verb_name, verb, config_path, overrides))
            return 0
        if words:
            raise ConfigError(f"unexpected argument {words[0]!r}",
                              fix="settings are key=value words (e.g. run=demo2); the YAML comes with --config FILE")
        cfg = load_config(verb.config, config_path, overrides)
        module_name, function_name = verb.run.split(":")
        from shared.runlog import setup_logging

        setup_logging()
        function = getattr(importlib.import_module(module_name), function_name)
        status = function(cfg)
        return status if isinstance(status, int) else 0  # work functions may return their output path
    except (InputError, OSError) as e:
        line, status = error_line(prog, e)
        if not line:
            raise
        print(line, file=sys.stderr)
        return status
