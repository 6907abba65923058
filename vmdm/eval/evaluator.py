"""The text–motion evaluator: a motion encoder and a text encoder sharing one embedding space.

Built after Guo et al. 2022's HumanML3D evaluator, sized for two CPU cores:

* motion: the normalised 263-dim features without the foot-contact channels (the original
  drops them too) -> a movement encoder of two stride-2 temporal convolutions (one token
  per 4 frames, the HumanML3D unit length) -> a bidirectional GRU over the tokens of each
  clip's valid length -> an MLP head on the final forward and backward states;
* text: a frozen sentence embedding (``vmdm.model.text``, MiniLM by default) -> a trainable MLP.

Both heads emit L2-normalised ``embed_dim`` vectors; all metrics measure Euclidean
distances between them. Training (``train_evaluator``) is contrastive: symmetric InfoNCE
over a batch, where pairs that share a clip or an identical caption are not used as
negatives.

Checkpoints (``save_evaluator`` / ``load_evaluator``) are versioned and carry the
normaliser, the configuration, the text encoder's name and the identity of the training
split (clip ids and a hash of ids + features), so an evaluation can check that it never
scores a model on motions the evaluator was trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vmdm.training.checkpoint import atomic_save, load_checkpoint
from vmdm.motion.representation import Normalizer, channel_groups, check_feature_convention, feature_convention_record
from vmdm.motion.skeleton import Skeleton, get_skeleton
from vmdm.model.text import TextEncoder, build_text_encoder

__all__ = [
    "EVALUATOR_FORMAT",
    "EVALUATOR_VERSION",
    "UNIT_LENGTH",
    "EvaluatorConfig",
    "MotionEncoder",
    "TextHead",
    "Evaluator",
    "split_hash",
    "save_evaluator",
    "load_evaluator",
]

EVALUATOR_FORMAT = "vmdm-evaluator"
EVALUATOR_VERSION = 2  # 2: HumanML3D-exact features (feature convention 2)
UNIT_LENGTH = 4  # frames per movement token (two stride-2 convolutions)


@dataclass
class EvaluatorConfig:
    feature_dim: int = 263
    skeleton: str = "smpl22"
    text_encoder: str = "minilm"
    text_dim: int = 384
    embed_dim: int = 512
    movement_dim: int = 256  # channels of the movement (conv) encoder
    gru_dim: int = 256  # hidden size per GRU direction
    text_hidden: int = 512
    dropout: float = 0.2
    max_frames: int = 196


class MotionEncoder(nn.Module):
    def __init__(self, cfg: EvaluatorConfig, in_dim: int):
        super().__init__()
        m = cfg.movement_dim
        self.movement = nn.Sequential(
            nn.Conv1d(in_dim, m, 4, 2, 1), nn.Dropout(cfg.dropout), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(m, m, 4, 2, 1), nn.Dropout(cfg.dropout), nn.LeakyReLU(0.2, inplace=True),
        )
        self.token = nn.Linear(m, m)
        self.gru = nn.GRU(m, cfg.gru_dim, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * cfg.gru_dim, cfg.text_hidden), nn.LayerNorm(cfg.text_hidden),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Linear(cfg.text_hidden, cfg.embed_dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x ``[B, F, in_dim]`` (normalised, zero past each length), lengths ``[B]`` frames."""
        h = self.token(self.movement(x.transpose(1, 2)).transpose(1, 2))  # [B, ~F/4, m]
        tokens = (lengths // UNIT_LENGTH).clamp(min=1, max=h.shape[1]).cpu()
        packed = pack_padded_sequence(h, tokens, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # [2, B, gru]: final forward and backward states
        return self.head(torch.cat((last[0], last[1]), dim=-1))


class TextHead(nn.Module):
    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.text_dim, cfg.text_hidden), nn.LayerNorm(cfg.text_hidden),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.text_hidden, cfg.embed_dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class Evaluator(nn.Module):
    """Embeds motions (raw, denormalised 263-dim features) and captions into one space."""

    def __init__(self, cfg: EvaluatorConfig, normalizer: Normalizer, text_encoder: TextEncoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.skeleton: Skeleton = get_skeleton(cfg.skeleton)
        if normalizer.dim != cfg.feature_dim:
            raise ValueError(f"normalizer: {normalizer.dim} channels, config expects {cfg.feature_dim}")
        self.normalizer = normalizer
        contacts = channel_groups(self.skeleton)["contacts"]
        keep = np.ones(cfg.feature_dim, dtype=bool)
        keep[contacts] = False
        self.register_buffer("keep", torch.from_numpy(np.nonzero(keep)[0]), persistent=False)
        self.register_buffer("mean", torch.as_tensor(normalizer.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.as_tensor(normalizer.std, dtype=torch.float32), persistent=False)
        self.motion = MotionEncoder(cfg, int(keep.sum()))
        self.text = TextHead(cfg)
        self._text_encoder = text_encoder

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = build_text_encoder(self.cfg.text_encoder)
        if self._text_encoder.dim != self.cfg.text_dim:
            raise ValueError(f"text encoder {self._text_encoder.name!r} gives {self._text_encoder.dim}-dim "
                             f"embeddings; the evaluator expects {self.cfg.text_dim}")
        return self._text_encoder

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def prepare(self, features: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features ``[B, F, D]`` -> normalised encoder input (no contacts, zero past each
        length, cropped to ``max_frames``) and the lengths, cropped to whole units."""
        f = torch.as_tensor(features, dtype=torch.float32, device=self.device)
        if f.ndim != 3 or f.shape[-1] != self.cfg.feature_dim:
            raise ValueError(f"features: expected [B, F, {self.cfg.feature_dim}], got {tuple(f.shape)}")
        L = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
        if L.shape[0] != f.shape[0]:
            raise ValueError(f"lengths: expected {f.shape[0]} values, got {L.shape[0]}")
        L = L.clamp(max=min(f.shape[1], self.cfg.max_frames))
        if bool((L < UNIT_LENGTH).any()):
            raise ValueError(f"lengths: each motion needs at least {UNIT_LENGTH} frames, got {L.tolist()}")
        L = L // UNIT_LENGTH * UNIT_LENGTH
        F = int(L.max())
        x = ((f[:, :F] - self.mean) / self.std)[..., self.keep]
        x = x * (torch.arange(F, device=self.device)[None] < L[:, None])[..., None]
        return x, L

    def embed_motion_normalised(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.motion(x, lengths), dim=-1)

    def embed_sentence(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text(sentence_emb.to(self.device)), dim=-1)

    @torch.no_grad()
    def embed_motions(self, features, lengths, batch_size: int = 256) -> np.ndarray:
        """Evaluator embeddings ``[N, embed_dim]`` of raw (denormalised) motion features."""
        was = self.training
        self.eval()
        out = []
        L_all = torch.as_tensor(lengths).reshape(-1)
        with full_float32():
            for s in range(0, len(L_all), batch_size):
                L = L_all[s:s + batch_size]
                x, L = self.prepare(features[s:s + batch_size, :int(L.max())], L)
                out.append(self.embed_motion_normalised(x, L).cpu())
        self.train(was)
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.embed_dim), np.float32)

    @torch.no_grad()
    def embed_texts(self, captions: list[str]) -> np.ndarray:
        was = self.training
        self.eval()
        with full_float32():
            out = self.embed_sentence(self.text_encoder(list(captions))).cpu().numpy()
        self.train(was)
        return out


@contextlib.contextmanager
def full_float32():
    """TF32 off for cuDNN (the GRU, the convolutions) and cuBLAS while embedding.

    Metrics from this evaluator are compared across machines; on Ampere and later GPUs cuDNN
    would otherwise round its float32 inputs to TF32 and move every embedding, and with it
    FID, off the CPU's numbers.
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


# --------------------------------------------------------------------------- checkpoints


def split_hash(ids: list[str], features: list[np.ndarray]) -> str:
    """sha256 of the clip ids and their float32 features, in order: identifies a training split."""
    h = hashlib.sha256()
    for cid, f in zip(ids, features):
        h.update(str(cid).encode())
        h.update(b"\0")
        h.update(np.ascontiguousarray(f, dtype=np.float32).tobytes())
    return h.hexdigest()


def save_evaluator(path: str | os.PathLike, model: Evaluator, *, train_split: dict, train_config: dict,
                   metrics: dict) -> Path:
    return atomic_save({
        "format": EVALUATOR_FORMAT,
        "version": EVALUATOR_VERSION,
        **feature_convention_record(),
        "config": asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalizer": {"mean": np.asarray(model.normalizer.mean), "std": np.asarray(model.normalizer.std)},
        "train_split": train_split,
        "train_config": train_config,
        "metrics": metrics,
    }, path)


def load_evaluator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   text_encoder: TextEncoder | None = None) -> tuple[Evaluator, dict]:
    """``(evaluator in eval mode, checkpoint metadata without the weights)``."""
    ck = load_checkpoint(path)
    if not isinstance(ck, dict) or ck.get("format") != EVALUATOR_FORMAT:
        raise ValueError(f"{path}: not an evaluator checkpoint (format {ck.get('format') if isinstance(ck, dict) else type(ck)!r})")
    check_feature_convention(ck, path)
    if ck.get("version") != EVALUATOR_VERSION:
        raise ValueError(f"{path}: evaluator format version {ck.get('version')}, this code reads {EVALUATOR_VERSION}; "
                         "retrain it with python -m vmdm.eval.train_evaluator")
    cfg = EvaluatorConfig(**ck["config"])
    norm = Normalizer(ck["normalizer"]["mean"], ck["normalizer"]["std"])
    model = Evaluator(cfg, norm, text_encoder)
    model.load_state_dict(ck["state_dict"])
    model.to(device).eval()
    meta = {k: v for k, v in ck.items() if k != "state_dict"}
    return model, meta

