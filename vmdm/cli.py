"""Dataclass configs with a generated command line.

Every field becomes ``--field-name``; its ``help`` metadata is the option's description,
so ``--help`` documents each option. Booleans take ``--x`` / ``--no-x``; optional fields
accept ``none``; a field made with ``field(..., positional=True)`` is a positional argument.
A field whose type is itself a config dataclass (``TrainConfig.loss: LossConfig``) adds its
options to the same command line, flat and under their own names, in a group of their own,
so nesting organises the code without changing the command line.

Named overlays (recipes) are dicts of option values laid over the dataclass defaults and
under what the command line sets: :func:`parse` reads ``--recipe`` first, so ``--help``
shows the values a run would really use.

Further options of :func:`field`, for command lines that predate the configs:

- ``field(REQUIRED, help)``: no default; the option is required on the command line (unless
  ``defaults`` give it) and the dataclass field is keyword-only, so it may follow fields
  with defaults and Python callers must name it.
- ``append=True`` on a ``list[...]`` field: the option is repeated, one item each time
  (``--text a --text b``; argparse's ``action="append"``) instead of ``nargs="*"``.
- ``sep=","`` on a ``list[...]`` field: one value holding the items separated by ``sep``
  (``--values 0,0.3,1``); a list default is shown joined the same way.
- ``metavar="NAME"``: the value's name in ``--help`` (argparse's ``metavar``).

:class:`ConfigError` is the error of a config value that a run rejects: its message starts
with the option (``--length: ...``), so ``main`` can hand it to ``parser.error`` while
Python callers get a plain :class:`ValueError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from pathlib import Path

__all__ = ["field", "REQUIRED", "ConfigError", "build_parser", "from_args", "from_dict", "to_flat", "parse", "run_main",
           "save_config"]

# ``field(REQUIRED, help)``: a field without a default, a required option.
REQUIRED = dataclasses.MISSING


def field(default, help: str, choices=None, positional: bool = False, *, append: bool = False,
          sep: str | None = None, metavar: str | None = None, **kw):
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if positional:
        meta["positional"] = True
    if append and sep is not None:
        raise TypeError("field: append and sep are exclusive (a repeated option, or one separated value)")
    meta.update({k: v for k, v in (("append", append or None), ("sep", sep), ("metavar", metavar)) if v is not None})
    if default is REQUIRED:
        return dataclasses.field(metadata=meta, kw_only=kw.pop("kw_only", True), **kw)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=meta, **kw)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _base_type(tp):
    """(type, optional) for ``X`` or ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _parse_optional(conv):
    def parse(s: str):
        return None if s.lower() in ("none", "null", "") else conv(s)

    return parse


def _nested(cls) -> dict[str, type]:
    """``{field name: config class}`` of the fields that are config dataclasses themselves."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def _leaf_fields(cls):
    """``(field, type, owner)`` of every option, nested configs' options included (flat)."""
    hints = typing.get_type_hints(cls)
    nested = _nested(cls)
    for f in dataclasses.fields(cls):
        if f.name in nested:
            yield from _leaf_fields(nested[f.name])
        else:
            yield f, hints[f.name], cls


def _has_default(f) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f):
    """The field's default; None for a required field (argparse's default of a required option)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def build_parser(cls, prog: str, description: str, defaults: dict | None = None,
                 parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The command line of config ``cls``; ``defaults`` (flat option values) override the
    dataclass defaults shown and used. ``parser``: add to it (a subcommand's parser)."""
    p = parser or argparse.ArgumentParser(prog=prog, description=description,
                                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = defaults or {}
    groups: dict[type, argparse._ArgumentGroup] = {}
    names = set()
    for f, hint, owner in _leaf_fields(cls):
        if f.name in names:
            raise TypeError(f"{cls.__name__}: option {f.name!r} is declared twice (nested configs share one "
                            "command line, so their field names must differ)")
        names.add(f.name)
        if owner is not cls and owner not in groups:  # one group per nested config
            groups[owner] = p.add_argument_group(f"{owner.__name__} options",
                                                 (owner.__doc__ or "").strip().split("\n")[0])
        target = p if owner is cls else groups[owner]
        tp, optional = _base_type(hint)
        help_ = f.metadata.get("help", "")
        default = defaults.get(f.name, _default(f))
        # Options: required when neither the field nor ``defaults`` give a value.
        kw = {"required": True} if not _has_default(f) and f.name not in defaults else {}
        if f.metadata.get("metavar") is not None:
            kw["metavar"] = f.metadata["metavar"]
        if f.metadata.get("positional"):
            conv = {int: int, float: float, str: str}.get(tp, str)
            kw.pop("required", None)
            if _has_default(f) or f.name in defaults:
                kw.update(nargs="?", default=default)
            target.add_argument(f.name, type=conv, help=help_, choices=f.metadata.get("choices"), **kw)
            continue
        name = "--" + f.name.replace("_", "-")
        if tp is bool:
            kw.pop("metavar", None)
            target.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help_, **kw)
            continue
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp) or (str,)
            conv = {int: int, float: float, str: str}.get(item, str)
            if f.metadata.get("append"):
                target.add_argument(name, type=conv, action="append", default=default, help=help_, **kw)
            elif f.metadata.get("sep") is not None:
                sep = f.metadata["sep"]
                shown = sep.join(str(v) for v in default) if isinstance(default, (list, tuple)) and default else default
                # argparse converts a string default with ``type``, so the value is a list either way.
                target.add_argument(name, type=_split(conv, sep, optional), default=shown, help=help_, **kw)
            else:
                target.add_argument(name, type=conv, nargs="*", default=default, help=help_, **kw)
            continue
        conv = {int: int, float: float, str: str}.get(tp, str)
        target.add_argument(name, type=_parse_optional(conv) if optional else conv, default=default, help=help_,
                            choices=f.metadata.get("choices"), **kw)
    return p


def _split(conv, sep: str, optional: bool):
    """argparse type of a ``sep``-separated list (``none`` for None when optional)."""

    def parse(s: str):
        if optional and s.strip().lower() in ("none", "null", ""):
            return None
        return [conv(v.strip()) for v in s.split(sep) if v.strip()]

    parse.__name__ = f"{getattr(conv, '__name__', 'value')} list"
    return parse


def from_dict(cls, values: dict, **overrides):
    """Config ``cls`` from a flat or nested dict of option values (unknown keys are an error,
    naming them); nested configs take their options from the flat keys or from a sub-dict."""
    values = {**values, **overrides}
    nested = _nested(cls)
    own = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, sub in nested.items():
        sub_names = {f.name for f, _, _ in _leaf_fields(sub)}
        given = values.pop(name, None)
        if given is not None and not isinstance(given, (dict, sub)):
            raise TypeError(f"{cls.__name__}.{name}: expected a {sub.__name__} or a dict, got {type(given).__name__}")
        part = dataclasses.asdict(given) if isinstance(given, sub) else dict(given or {})
        part.update({k: values.pop(k) for k in list(values) if k in sub_names and k not in own})
        kwargs[name] = from_dict(sub, part)
    unknown = set(values) - own
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown option(s) {sorted(unknown)}")
    kwargs.update(values)
    return cls(**kwargs)


def from_args(cls, args: argparse.Namespace, **overrides):
    values = {f.name: getattr(args, f.name) for f, _, _ in _leaf_fields(cls)}
    return from_dict(cls, values, **overrides)


def to_flat(cfg) -> dict:
    """The option values of a config, nested configs' options flattened into one dict."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out.update(to_flat(v) if dataclasses.is_dataclass(v) else {f.name: v})
    return out


def parse(cls, prog: str, description: str, argv=None, recipes: dict[str, dict] | None = None,
          default_recipe: str | None = None):
    """``(config, parser)`` from the command line; with ``recipes``, ``--recipe NAME`` lays
    that recipe's values over the defaults before the other options are read."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not recipes:
        parser = build_parser(cls, prog, description)
        return from_args(cls, parser.parse_args(argv)), parser
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", choices=sorted(recipes), default=default_recipe)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(cls, prog, description, defaults=recipes[known.recipe])
    parser.add_argument("--recipe", choices=sorted(recipes), default=default_recipe,
                        help="named defaults laid over the ones below (the defaults shown are this recipe's: "
                             "pass --recipe NAME --help to see another's); explicit options override them")
    return from_args(cls, parser.parse_args(argv)), parser


def save_config(cfg, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class ConfigError(ValueError):
    """A config value that a run rejects; the message starts with the option (``--x: ...``)."""


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def run_main(cls, prog: str, description: str, run, argv=None, *, recipes: dict[str, dict] | None = None,
             default_recipe: str | None = None, required: tuple[str, ...] = (),
             errors: tuple[type[Exception], ...] = (ConfigError,), log_format: str = LOG_FORMAT) -> int:
    """A command's ``main``: parse ``cls`` from ``argv`` (see :func:`parse`), insist on the
    ``required`` options, set up logging and return ``run(cfg)`` (None counts as 0). An
    exception of the types in ``errors`` raised by ``run`` is reported like a bad option
    (usage, the message, exit status 2)."""
    cfg, parser = parse(cls, prog, description, argv, recipes, default_recipe)
    for name in required:
        if getattr(cfg, name) in (None, "", []):
            parser.error(f"--{name.replace('_', '-')} is required")
    logging.basicConfig(level=logging.INFO, format=log_format)
    try:
        code = run(cfg)
    except errors as e:
        parser.error(str(e))
    return 0 if code is None else int(code)
