"""Content hashes of datasets and teacher checkpoints, recorded with every result.

A hash covers what an experiment reads, never where or when it was written: a corpus or a
HumanML3D-format folder by its files (relative paths and bytes), a 2D-only dataset by the
arrays inside its ``.npz`` files (zip members carry timestamps) and its text files (its
``vmdm_2d.json`` holds absolute paths and is left out), a lifter by its weights. Short
forms are the first 12 hex digits.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["dataset_hash", "lifter_hash", "data_record", "short", "warn_mismatch", "HASH_FILE"]

HASH_FILE = "data_hash.json"  # in a default-data cache folder: the record of its last build
_SKIP = {"vmdm_2d.json", HASH_FILE}
_SKIP_SUFFIXES = (".tmp", ".lock")


def short(h: str | None) -> str:
    return "-" if not h else h[:12]


def _npz_update(h, path: Path) -> None:
    # Arrays are read raw from the zip (np.load would accept pickled object arrays).
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            with z.open(name) as f:
                arr = np.lib.format.read_array(io.BytesIO(f.read()), allow_pickle=False)
            h.update(name.encode() + b"\0" + arr.dtype.str.encode() + str(arr.shape).encode() + b"\0")
            h.update(np.ascontiguousarray(arr).tobytes())


def dataset_hash(root: str | os.PathLike) -> str:
    """sha256 of a dataset folder's content (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root: {root} is not a folder")
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in _SKIP
                   and not p.name.endswith(_SKIP_SUFFIXES))
    for p in files:
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0")
        if p.suffix == ".npz":
            _npz_update(h, p)
        else:
            h.update(p.read_bytes())
        h.update(b"\1")
    return h.hexdigest()


def lifter_hash(path: str | os.PathLike) -> str:
    """sha256 of a teacher lifter's weights (names, dtypes, shapes, values) and its config."""
    from dataclasses import asdict

    from vmdm.data.build.teacher import load_lifter

    model = load_lifter(path)
    state = model.state_dict()
    h = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True).encode())
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def data_record(corpus: str | os.PathLike, lifter: str | os.PathLike, dataset_2d: str | os.PathLike) -> dict:
    """Hashes of the three default-data artefacts and one over all three."""
    from vmdm.data.build.numerics import numerics_record

    rec = {"corpus": dataset_hash(corpus), "lifter": lifter_hash(lifter), "dataset_2d": dataset_hash(dataset_2d)}
    rec["data"] = hashlib.sha256("".join(rec[k] for k in ("corpus", "lifter", "dataset_2d")).encode()).hexdigest()
    rec["numerics"] = numerics_record()
    return rec


def warn_mismatch(what: str, current: str | None, recorded: str | None, where: str) -> bool:
    """Print a loud warning when two hashes differ (a missing one counts as different);
    True if they did. Results made with other data or another evaluator are not comparable."""
    if current and recorded and current == recorded:
        return False
    import logging
    import sys

    msg = (f"{what} hash {short(current)} differs from {short(recorded)} recorded in {where}: "
           "these results are NOT comparable with it")
    logging.getLogger("vmdm").warning(msg)
    bar = "!" * min(100, len(msg) + 8)
    print(f"{bar}\n!!! {msg}\n{bar}", file=sys.stderr)
    return True
