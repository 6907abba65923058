"""Text-to-motion generation metrics, computed the way the HumanML3D protocol computes them.

All functions take evaluator embeddings (numpy or torch, ``[N, D]``) and return plain
floats / numpy arrays. The protocol (Guo et al. 2022, "Generating Diverse and Natural 3D
Human Motions from Texts", and its public evaluation scripts) is:

* **FID**: Fréchet distance between Gaussians fitted to the embeddings of generated
  motions and of the test set's real motions.
* **R-precision (top-1/2/3)**: the motions are cut into batches of 32; in each batch every
  motion ranks the 32 captions of the batch (its own + 31 others) by Euclidean distance;
  top-k is the fraction of motions whose own caption is among the k closest.
* **MM-Dist** ("matching score"): mean Euclidean distance between each motion and its caption.
* **Diversity**: mean distance between 300 random pairs of motions.
* **MultiModality**: for each of a set of prompts, several generations; the mean distance
  between random pairs of generations of the same prompt.
* Each is repeated (20 times in the paper) and reported as mean ± 1.96·std/√n.

Departures, each written where it happens: ties in R-precision count against the true
caption (so a collapsed embedding scores 0, not 1); sets smaller than the pair counts use
as many pairs as there are items; the Fréchet trace term is computed from a symmetric
eigendecomposition instead of a general matrix square root (same value, always real).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "as_numpy",
    "embedding_statistics",
    "frechet_distance",
    "fid",
    "euclidean_distance_matrix",
    "r_precision",
    "matching_distance",
    "diversity",
    "multimodality",
    "MeanCI",
    "mean_ci",
]


def as_numpy(x) -> np.ndarray:
    """float64 numpy copy of a numpy array or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_2d(x, name: str) -> np.ndarray:
    a = as_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected [N, D] embeddings, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return a


# --------------------------------------------------------------------------- FID


def embedding_statistics(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, as ``np.cov``) of ``[N, D]`` embeddings."""
    a = _check_2d(emb, "emb")
    if a.shape[0] < 2:
        raise ValueError(f"emb: need at least 2 samples for a covariance, got {a.shape[0]}")
    return a.mean(axis=0), np.cov(a, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`` for two Gaussians.

    ``tr((S1 S2)^{1/2})`` equals the sum of square roots of the eigenvalues of the
    symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}`` (similar to ``S1 S2``), which we
    compute with ``eigh``: no complex round-off to discard, stable for the singular
    covariances that small test sets give (N < D).
    """
    mu1, mu2 = as_numpy(mu1).reshape(-1), as_numpy(mu2).reshape(-1)
    s1, s2 = np.atleast_2d(as_numpy(sigma1)), np.atleast_2d(as_numpy(sigma2))
    D = mu1.shape[0]
    if mu2.shape != (D,) or s1.shape != (D, D) or s2.shape != (D, D):
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    val = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # Round-off can leave -1e-12 for identical sets; a distance is never negative.
    return max(val, 0.0)


def fid(real_emb, gen_emb) -> float:
    """FID between two embedding sets ``[N1, D]`` and ``[N2, D]``."""
    return frechet_distance(*embedding_statistics(real_emb), *embedding_statistics(gen_emb))


# --------------------------------------------------------------------------- matching


def euclidean_distance_matrix(a, b) -> np.ndarray:
    """``[N, M]`` pairwise Euclidean distances between rows of ``a [N, D]`` and ``b [M, D]``."""
    a, b = _check_2d(a, "a"), _check_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"euclidean_distance_matrix: dims differ ({a.shape[1]} vs {b.shape[1]})")
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None))


def matching_distance(motion_emb, text_emb) -> float:
    """MM-Dist: mean distance between each motion and its own caption (rows paired)."""
    m, t = _check_2d(motion_emb, "motion_emb"), _check_2d(text_emb, "text_emb")
    if m.shape != t.shape:
        raise ValueError(f"matching_distance: motion {m.shape} and text {t.shape} embeddings must pair up")
    return float(np.linalg.norm(m - t, axis=1).mean())


def r_precision(motion_emb, text_emb, top_k: int = 3, batch_size: int = 32,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """R-precision top-1..top_k over batches of ``batch_size`` (row ``i`` of each pairs up).

    The pairs are shuffled (``rng``; no shuffle when None) and cut into full batches (the
    reference scripts drop the last incomplete batch). With fewer than ``batch_size``
    pairs the whole set is one batch, so chance level is ``k / N``: the effective batch
    size is returned with the scores. Ties count against the true caption: its rank is
    the number of *other* captions at a distance <= its own.

    Returns ``(scores [top_k], effective_batch_size)``.
    """
    m, t = _check_2d(motion_emb, "motion_emb"), _check_2d(text_emb, "text_emb")
    if m.shape != t.shape:
        raise ValueError(f"r_precision: motion {m.shape} and text {t.shape} embeddings must pair up")
    n = m.shape[0]
    if n < 2:
        raise ValueError(f"r_precision: need at least 2 pairs, got {n}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    bs = min(batch_size, n)
    hits = np.zeros(top_k)
    count = 0
    for s in range(0, n - bs + 1, bs):
        idx = order[s:s + bs]
        d = euclidean_distance_matrix(m[idx], t[idx])  # row: one motion vs all captions
        own = np.diag(d)[:, None]
        others = d <= own
        np.fill_diagonal(others, False)
        rank = others.sum(1)  # 0 = own caption strictly closest
        hits += np.array([(rank < k).sum() for k in range(1, top_k + 1)])
        count += bs
    return hits / count, bs


# --------------------------------------------------------------------------- diversity


def diversity(emb, n_pairs: int = 300, rng: np.random.Generator | None = None) -> float:
    """Mean distance between ``n_pairs`` random pairs (two draws without replacement, as the
    reference scripts do; with fewer than ``n_pairs`` items, as many pairs as items)."""
    a = _check_2d(emb, "emb")
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"diversity: need at least 2 motions, got {n}")
    rng = rng if rng is not None else np.random.default_rng()
    k = min(n_pairs, n)
    first = rng.choice(n, k, replace=False)
    second = rng.choice(n, k, replace=False)
    return float(np.linalg.norm(a[first] - a[second], axis=1).mean())


def multimodality(emb, n_pairs: int = 10, rng: np.random.Generator | None = None) -> float:
    """Mean distance between generations of the same prompt, ``emb [P, G, D]``.

    For each prompt, ``n_pairs`` pairs (two draws of generation indices without
    replacement, shared by all prompts, as the reference scripts do; at most ``G``).
    """
    a = as_numpy(emb)
    if a.ndim != 3 or a.shape[1] < 2:
        raise ValueError(f"multimodality: expected [prompts, generations >= 2, D], got shape {a.shape}")
    rng = rng if rng is not None else np.random.default_rng()
    G = a.shape[1]
    k = min(n_pairs, G)
    first = rng.choice(G, k, replace=False)
    second = rng.choice(G, k, replace=False)
    return float(np.linalg.norm(a[:, first] - a[:, second], axis=2).mean())


# --------------------------------------------------------------------------- repeats


@dataclass(frozen=True)
class MeanCI:
    mean: float
    ci95: float  # half-width
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.mean:{spec}} ± {self.ci95:{spec}}"


def mean_ci(values) -> MeanCI:
    """Mean and 95% interval half-width ``1.96 * std / sqrt(n)`` over repeated runs.

    ``std`` is the population std (``ddof=0``), as the HumanML3D scripts compute it.
    NaN entries (a metric undefined in one repeat) are left out.
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    return MeanCI(float(v.mean()), float(1.96 * v.std() / math.sqrt(v.size)), int(v.size))


def mean_ci_t(values) -> MeanCI:
    """Mean and 95% Student-t interval half-width ``t(0.975, n-1) * s / sqrt(n)`` (``s`` with
    ``ddof=1``): for a few independent runs, e.g. training seeds, where the normal
    approximation of :func:`mean_ci` would be far too narrow. One value has no interval (NaN)."""
    from scipy.stats import t as student_t

    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    if v.size == 1:
        return MeanCI(float(v[0]), float("nan"), 1)
    half = student_t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return MeanCI(float(v.mean()), float(half), int(v.size))
