"""Checkpoints: crash-safe writing, code-free reading, and the random state to resume bit-for-bit.

Every file the project writes with :func:`torch.save` (denoiser checkpoints, the teacher
lifter, the evaluator) holds tensors and plain Python data only (dict, list, tuple, str,
int, float, bool, None), and every reader goes through :func:`load_checkpoint`, which
unpickles with ``torch.load(weights_only=True)``: a file that names any other Python object
is refused instead of loaded, because unpickling such an object can run arbitrary code.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then
renamed over the old one (an atomic replace on POSIX), so a crash or SIGKILL at any moment
leaves either the previous checkpoint or the new one, never a truncated file.

The denoiser checkpoint's keys are declared once, by :class:`DenoiserCheckpoint`, which
`python -m vmdm.train` writes and every reader reads.

Files written before this layout (numpy arrays, numpy/python random-state tuples and
numpy scalars inside) are refused like any other unsafe file. For a file you trust,
``python -m vmdm.training.checkpoint convert OLD.pt NEW.pt`` rewrites it in the safe layout; it is
the one place that unpickles without the safe loader.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import random
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import torch

from vmdm.cli import REQUIRED, field
from vmdm.motion.representation import check_feature_convention, feature_convention_record

__all__ = ["FORMAT", "READABLE_FORMATS", "DenoiserCheckpoint", "CheckpointFormatError", "UnsafeCheckpointError", "atomic_save", "load_checkpoint", "to_plain", "rng_state",
           "set_rng_state", "convert"]

# Layout of the denoiser checkpoint (vmdm.train): 3 nests the loss options of the saved
# training config under config["loss"]; 2 listed them flat; both hold plain data only, and 2
# is read as 3. 1 (key "version") held numpy arrays and random-state tuples, readable only
# by full unpickling (see convert).
FORMAT = 3
READABLE_FORMATS = (2, 3)

CONVERT_HINT = "python -m vmdm.training.checkpoint convert"

# Exactly what torch.load(weights_only=True) rebuilds without importing anything: exact
# types, since e.g. numpy.float64 is a float subclass that pickles as a numpy object.
_PLAIN_LEAVES = (str, int, float, bool, type(None), bytes, complex, torch.dtype, torch.device, torch.Size)
_PLAIN_MAPPINGS = (dict, OrderedDict)


class UnsafeCheckpointError(RuntimeError):
    """A file the safe loader refused: it names Python objects that unpickling would create."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(
            f"{path}: not loaded: it holds Python objects besides tensors and plain data ({reason}), so it may "
            f"contain code that loading would run. If it is a checkpoint written by an older vmdm and you trust "
            f"its source, convert it once with `{CONVERT_HINT} {path} NEW.pt` and load NEW.pt")


def _refusal_reason(message: str) -> str:
    found = re.search(r"GLOBAL (\S+?)(?: was not| whose|\s|$)", message)
    return f"it refers to {found.group(1)}" if found else "its pickle uses an operation the safe loader rejects"


# --------------------------------------------------------------------------- writing


def to_plain(obj, where: str = "checkpoint"):
    """``obj`` with numpy arrays and scalars, paths and dataclasses turned into tensors and plain
    data; anything else that is not plain data raises :class:`TypeError` naming where it is.

    Containers that need no change are returned as they are (a module's ``state_dict`` keeps
    its ``_metadata``), so the walk copies nothing but the parts it converts.
    """
    kind = type(obj)
    if kind in _PLAIN_LEAVES or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            return torch.from_numpy(np.array(obj, dtype=obj.dtype.newbyteorder("="), copy=True))
        if obj.dtype.kind == "U":
            return obj.tolist()
        raise TypeError(f"{where}: expected tensors and plain data, got a numpy array of dtype {obj.dtype}")
    if isinstance(obj, np.generic):
        return to_plain(obj.item(), where)
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj), where)
    if kind in _PLAIN_MAPPINGS:
        old = list(obj.items())
        new = [(to_plain(k, f"{where} key {k!r}"), to_plain(v, f"{where}[{k!r}]")) for k, v in old]
        same = all(nk is ok and nv is ov for (nk, nv), (ok, ov) in zip(new, old))
        return obj if same else kind(new)
    if kind in (list, tuple):
        new = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return obj if all(a is b for a, b in zip(new, obj)) else kind(new)
    raise TypeError(f"{where}: expected tensors and plain data (dict, list, tuple, str, int, float, bool, None), "
                    f"got {kind.__module__}.{kind.__qualname__}")


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` (made plain by :func:`to_plain`) so that it loads with ``weights_only=True``."""
    path = Path(path)
    obj = to_plain(obj, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- reading


def load_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """The file's content, unpickled by the safe loader; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(path, _refusal_reason(str(e))) from None
    except Exception as e:  # a file that is not a complete checkpoint
        raise RuntimeError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- the denoiser's schema


def nest_loss_options(config: dict) -> dict:
    """A saved training config with its loss options under ``"loss"`` (as format 3 saves it),
    from either layout."""
    from vmdm.training.config import LossConfig

    names = {f.name for f in dataclasses.fields(LossConfig)}
    loss = dict(config.get("loss") or {})
    loss.update({k: v for k, v in config.items() if k in names})
    return {**{k: v for k, v in config.items() if k not in names}, "loss": loss}


class CheckpointFormatError(ValueError):
    """A file that is not a denoiser checkpoint of a readable format, or lacks a key it must hold."""


@dataclass
class DenoiserCheckpoint:
    """Everything a denoiser run saves: enough to sample (weights, normaliser, skeleton,
    model and training config), to resume bit for bit (optimiser, scheduler, data position,
    random streams) and to tell which data it was trained on (root and hash)."""

    step: int
    model: dict  # state dict of the trained weights
    ema: dict  # state dict of the EMA weights (the ones sampling uses)
    model_config: dict  # vmdm.model.denoiser.DenoiserConfig as a dict
    config: dict  # vmdm.training.config.TrainConfig as a (nested) dict
    normalizer: dict  # {"mean": array [D], "std": array [D]}
    skeleton: str
    data_pos: tuple = (0, 0)  # (epoch, batch) the next batch is drawn from
    optim: dict | None = None
    sched: dict | None = None
    rng: list = dataclasses.field(default_factory=list)  # one random state per rank
    bad_steps_total: int = 0
    body_scale: float | None = None  # input / prediction bone lengths (vmdm.training.body_scale)
    data_root: str | None = None
    data_hash: str | None = None
    feature_convention: dict = dataclasses.field(default_factory=feature_convention_record)

    _REQUIRED = ("step", "model", "ema", "model_config", "config", "normalizer", "skeleton")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "feature_convention"}
        d["data_pos"] = list(self.data_pos)
        d["normalizer"] = {"mean": np.asarray(self.normalizer["mean"]), "std": np.asarray(self.normalizer["std"])}
        return {"format": FORMAT, **self.feature_convention, **d}

    @classmethod
    def from_dict(cls, ck, where: str | os.PathLike = "checkpoint") -> "DenoiserCheckpoint":
        """The checkpoint in ``ck`` (a loaded file's content), checked: its format, its feature
        convention and the keys every reader needs."""
        if not isinstance(ck, dict) or "model_config" not in ck:
            raise CheckpointFormatError(f"{where}: not a denoiser checkpoint (expected a dict with 'model_config', "
                                        f"got {type(ck).__name__}{' with keys ' + str(sorted(ck)[:8]) if isinstance(ck, dict) else ''})")
        fmt = ck.get("format")
        if fmt not in READABLE_FORMATS:
            raise CheckpointFormatError(f"{where}: checkpoint format {fmt!r}; this code reads formats "
                                        f"{list(READABLE_FORMATS)}")
        check_feature_convention(ck, where)
        missing = [k for k in cls._REQUIRED if k not in ck]
        if missing:
            raise CheckpointFormatError(f"{where}: checkpoint lacks {missing}")
        norm = ck["normalizer"]
        if not isinstance(norm, dict) or not {"mean", "std"} <= set(norm):
            raise CheckpointFormatError(f"{where}: 'normalizer' must hold 'mean' and 'std', got {norm!r:.80}")
        names = {f.name for f in dataclasses.fields(cls)} - {"feature_convention"}
        values = {k: ck[k] for k in names if k in ck}
        values["config"] = nest_loss_options(ck["config"])
        values["data_pos"] = tuple(values.get("data_pos", (0, 0)))
        conv = {k: ck[k] for k in feature_convention_record() if k in ck}
        return cls(**values, feature_convention=conv or feature_convention_record())

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a crash leaves the previous file or this one, never a truncated one)."""
        return atomic_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "DenoiserCheckpoint":
        """Read with the safe loader (never runs code from the file) and check the schema."""
        return cls.from_dict(load_checkpoint(path, map_location), path)


# --------------------------------------------------------------------------- random state


def _numpy_state(state) -> dict:
    """numpy's global MT19937 state (legacy tuple or dict form) as plain data."""
    if isinstance(state, tuple):
        name, key, pos, has_gauss, gauss = state
    else:
        name, key, pos = state["bit_generator"], state["state"]["key"], state["state"]["pos"]
        has_gauss, gauss = state["has_gauss"], state["gauss"]
    # uint32 words in int64: uint32 tensors support too few operations to rely on.
    return {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _python_state(state) -> dict:
    version, internal, gauss_next = state
    return {"version": int(version), "internal": [int(v) for v in internal],
            "gauss_next": None if gauss_next is None else float(gauss_next)}


def rng_state(device: torch.device | str | None = None) -> dict:
    """The CPU generators' state, and the CUDA generator of ``device`` when it is a GPU, as plain data.

    Only the training device's CUDA generator is kept: a process draws from no other, and
    the list of every visible GPU's state would not restore on a machine with fewer GPUs.
    """
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(np.random.get_state(legacy=False)),
             "python": _python_state(random.getstate())}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | str | None = None) -> None:
    """Restore :func:`rng_state`; its CUDA state goes to ``device`` when that is a GPU."""
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    device = torch.device(device) if device is not None else None
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):  # checkpoints that saved every visible GPU's state
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)


# --------------------------------------------------------------------------- converting older files


def _upgrade_rng(state):
    if not isinstance(state, dict):
        return state
    state = dict(state)
    if isinstance(state.get("numpy"), tuple):
        state["numpy"] = _numpy_state(state["numpy"])
    if isinstance(state.get("python"), tuple):
        state["python"] = _python_state(state["python"])
    return state


def _upgrade(ck):
    """An older checkpoint's content in the current layout (before :func:`to_plain`)."""
    if not isinstance(ck, dict):
        return ck
    ck = dict(ck)
    if isinstance(ck.get("rng"), list):  # a denoiser checkpoint: one random state per rank
        ck["rng"] = [_upgrade_rng(s) for s in ck["rng"]]
    if "model_config" in ck:
        ck.pop("version", None)
        if isinstance(ck.get("config"), dict):
            ck["config"] = nest_loss_options(ck["config"])
        ck["format"] = FORMAT
    return ck


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rewrite a TRUSTED older checkpoint ``src`` in the safe layout at ``dst``.

    This unpickles ``src`` with ``weights_only=False``, which runs any code the file holds:
    only for files whose source you trust.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint {src} does not exist")
    ck = torch.load(src, map_location="cpu", weights_only=False)  # the one full unpickling, on request
    out = atomic_save(_upgrade(ck), dst)
    load_checkpoint(out)  # the result must pass the safe loader
    return out


@dataclass
class ConvertConfig:
    """The options of ``python -m vmdm.training.checkpoint convert``."""

    old: str = field(REQUIRED, "checkpoint to read (fully unpickled: trusted files only)", positional=True)
    new: str = field(REQUIRED, "where to write the converted checkpoint", positional=True)
    overwrite: bool = field(False, "replace NEW if it exists (NEW may then be OLD)")


_CONVERT_DESCRIPTION = (
    "Rewrite a checkpoint written by an older vmdm (denoiser, teacher lifter or evaluator; numpy arrays or "
    "random-state tuples inside) in the current layout of tensors and plain data, which every vmdm command "
    "loads with torch.load(weights_only=True). WARNING: this reads OLD with full unpickling "
    "(weights_only=False), which runs any code the file contains. Run it only on files whose source you trust.")


def main(argv=None) -> int:
    from vmdm.cli import build_parser, from_args

    p = argparse.ArgumentParser(prog="python -m vmdm.training.checkpoint", description="Checkpoint maintenance.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="rewrite a trusted older checkpoint so that it loads without running code",
                       description=_CONVERT_DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    build_parser(ConvertConfig, "", "", parser=c)
    cfg = from_args(ConvertConfig, p.parse_args(argv))
    if Path(cfg.new).exists() and not cfg.overwrite:
        p.error(f"{cfg.new}: already exists (pass --overwrite to replace it)")
    out = convert(cfg.old, cfg.new)
    print(f"wrote {out} (loads with weights_only=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
