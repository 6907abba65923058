"""Dataclass configs with a generated command line.

Every field becomes ``--field-name``; its ``help`` metadata is the option's
description, so ``--help`` documents each option. Booleans take ``--x`` /
``--no-x``. Optional fields accept ``none``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path

__all__ = ["field", "build_parser", "from_args", "save_config"]


def field(default, help: str, choices=None, **kw):
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
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


def build_parser(cls, prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _base_type(hints[f.name])
        name = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if tp is bool:
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        conv = {int: int, float: float, str: str}.get(tp, str)
        p.add_argument(name, type=_parse_optional(conv) if optional else conv, default=default, help=help_,
                       choices=f.metadata.get("choices"))
    return p


def from_args(cls, args: argparse.Namespace, **overrides):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    values.update(overrides)
    return cls(**values)


def save_config(cfg, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
