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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

__all__ = ["field", "build_parser", "from_args", "from_dict", "to_flat", "parse", "save_config"]


def field(default, help: str, choices=None, positional: bool = False, **kw):
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if positional:
        meta["positional"] = True
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


def _default(f):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


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
        target = p if owner is cls else groups.setdefault(
            owner, p.add_argument_group(f"{owner.__name__} options", (owner.__doc__ or "").strip().split("\n")[0]))
        tp, optional = _base_type(hint)
        help_ = f.metadata.get("help", "")
        default = defaults.get(f.name, _default(f))
        if f.metadata.get("positional"):
            conv = {int: int, float: float, str: str}.get(tp, str)
            kw = {"nargs": "?", "default": default} if f.default is not dataclasses.MISSING else {}
            target.add_argument(f.name, type=conv, help=help_, choices=f.metadata.get("choices"), **kw)
            continue
        name = "--" + f.name.replace("_", "-")
        if tp is bool:
            target.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp) or (str,)
            conv = {int: int, float: float, str: str}.get(item, str)
            target.add_argument(name, type=conv, nargs="*", default=default, help=help_)
            continue
        conv = {int: int, float: float, str: str}.get(tp, str)
        target.add_argument(name, type=_parse_optional(conv) if optional else conv, default=default, help=help_,
                            choices=f.metadata.get("choices"))
    return p


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
