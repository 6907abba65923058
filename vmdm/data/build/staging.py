"""Folders built whole or not at all: a build writes into a fresh folder beside its target,
which replaces the target only once everything is written."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder"]


@contextmanager
def staged_folder(out: str | os.PathLike):
    """Yield a fresh temporary folder beside ``out``; when the block ends without an error
    it replaces ``out`` (a rename on the same file system), otherwise it is removed. An
    interrupted build therefore never leaves a half-written ``out`` behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
