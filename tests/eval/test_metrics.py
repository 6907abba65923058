"""Generation metrics against values computed by hand or in closed form."""

import math

import numpy as np
import pytest
import scipy.linalg

from vmdm.eval.metrics import (
    diversity,
    euclidean_distance_matrix,
    fid,
    frechet_distance,
    matching_distance,
    mean_ci,
    multimodality,
    r_precision,
)


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 16))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_closed_form_isotropic():
    # N(0, I) vs N(m, 4I) in D dims: |m|^2 + D + 4D - 2 tr(2I) = |m|^2 + D.
    D = 5
    m = np.arange(D, dtype=float)
    val = frechet_distance(np.zeros(D), np.eye(D), m, 4 * np.eye(D))
    assert val == pytest.approx(m @ m + D, rel=1e-10)


def test_frechet_matches_general_matrix_square_root():
    # Non-commuting covariances: compare with the textbook formula through scipy's sqrtm.
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = A @ A.T + 0.1 * np.eye(6), B @ B.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def _exact_gaussian_sample(rng, n, cov):
    """n samples whose sample mean is exactly 0 and sample covariance exactly ``cov``."""
    x = rng.normal(size=(n, cov.shape[0]))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whiten exactly
    return x @ np.linalg.cholesky(cov).T


def test_fid_of_shifted_gaussian_samples():
    # Samples with exact moments: N(0, I) vs N(m, 4I) must give |m|^2 + D.
    rng = np.random.default_rng(2)
    shift = np.array([1.0, -2.0, 0.5])
    a = _exact_gaussian_sample(rng, 300, np.eye(3))
    b = _exact_gaussian_sample(rng, 500, 4 * np.eye(3)) + shift
    assert fid(a, b) == pytest.approx(shift @ shift + 3, rel=1e-9)


def test_fid_is_symmetric_and_grows_with_the_shift():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(500, 4))
    near, far = a + 0.1, a + 1.0
    assert fid(a, near) == pytest.approx(fid(near, a), rel=1e-9)
    assert fid(a, near) < fid(a, far)


def test_fid_rejects_mismatched_shapes_and_nan():
    with pytest.raises(ValueError):
        fid(np.zeros((10, 3)), np.zeros((10, 4)))
    bad = np.ones((10, 3))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fid(bad, np.ones((10, 3)))


def test_distance_matrix_by_hand():
    d = euclidean_distance_matrix([[0, 0], [3, 4]], [[0, 0], [0, 4]])
    np.testing.assert_allclose(d, [[0, 4], [5, 3]], atol=1e-12)


def test_r_precision_of_a_perfect_embedding_is_one():
    e = np.random.default_rng(4).normal(size=(64, 8))
    top, bs = r_precision(e, e.copy(), 3, 32, np.random.default_rng(0))
    assert bs == 32
    np.testing.assert_array_equal(top, [1.0, 1.0, 1.0])


def test_r_precision_of_a_collapsed_embedding_is_zero():
    # Ties count against the true caption: identical embeddings must not look perfect.
    e = np.ones((32, 8))
    top, _ = r_precision(e, e, 3, 32)
    np.testing.assert_array_equal(top, [0.0, 0.0, 0.0])


def test_r_precision_ranks_by_hand():
    # Motions at 0, 10, 20 on a line; captions at 6, 9, 33. Distances from motion 0: 6, 9, 33
    # (own nearest); from motion 1: 4, 1, 23 (own nearest); from motion 2: 14, 11, 13 (own
    # second, after caption 1). So top-1 = 2/3 and top-2 = top-3 = 1.
    m = np.array([[0.0], [10.0], [20.0]])
    t = np.array([[6.0], [9.0], [33.0]])
    top, bs = r_precision(m, t, 3, 32)
    assert bs == 3
    np.testing.assert_allclose(top, [2 / 3, 1.0, 1.0])


def test_r_precision_drops_the_incomplete_batch():
    e = np.random.default_rng(5).normal(size=(70, 8))
    m = e.copy()
    m[64:] = 0.0  # the last 6 would score badly, but they never form a full batch
    top, bs = r_precision(m, e, 3, 32)  # no shuffle: batches are rows 0-31 and 32-63
    assert bs == 32
    np.testing.assert_array_equal(top, [1.0, 1.0, 1.0])


def test_matching_distance_by_hand():
    assert matching_distance([[0, 0], [3, 4]], [[0, 1], [0, 0]]) == pytest.approx(3.0)


def test_diversity_by_hand():
    # 400 points, any two distinct ones 5 apart: 300 pairs from two draws without
    # replacement hit the same point with probability about 1/400.
    pts = np.eye(400) * 5 / np.sqrt(2)
    val = diversity(pts, 300, np.random.default_rng(0))
    assert 0.97 * 5 <= val <= 5.0
    assert diversity(np.ones((50, 3)), 300, np.random.default_rng(0)) == 0.0


def test_multimodality_is_within_prompt():
    rng = np.random.default_rng(6)
    gen = rng.normal(size=(8, 10, 4))
    base = multimodality(gen, 10, np.random.default_rng(1))
    # Moving whole prompts apart changes nothing: only generations of one prompt are compared.
    shifted = gen + 100 * rng.normal(size=(8, 1, 4))
    assert multimodality(shifted, 10, np.random.default_rng(1)) == pytest.approx(base, rel=1e-9)
    same = np.repeat(gen[:, :1], 10, axis=1)
    assert multimodality(same, 10, np.random.default_rng(1)) == 0.0
    assert base > 0


def test_mean_ci_by_hand():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == pytest.approx(2.0)
    assert ci.ci95 == pytest.approx(1.96 * np.sqrt(2 / 3) / np.sqrt(3))
    assert ci.n == 3
    assert f"{ci:.2f}" == "2.00 ± 0.92"
    assert mean_ci([np.nan, 4.0]).mean == 4.0


def test_mean_ci_t_over_a_few_runs():
    from scipy.stats import t as student_t

    from vmdm.eval.metrics import mean_ci_t

    m = mean_ci_t([1.0, 3.0])
    assert m.mean == 2.0 and m.n == 2
    assert m.ci95 == pytest.approx(student_t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2))  # 12.71
    m = mean_ci_t([0.2, 0.3, float("nan"), 0.4])
    assert m.n == 3 and m.mean == pytest.approx(0.3) and m.ci95 == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)
    one = mean_ci_t([0.5])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.ci95)
    assert mean_ci_t([]).n == 0


def test_reencode_recomputes_every_channel_from_the_positions():
    """``reencode`` (the features behind "FID (positions)") is encode(decode(x)) per clip: on
    features that are already HumanML3D's of their joints it gives them back (up to the
    facing smoothing's reach of the clip's one-frame-shorter end), whatever padding follows."""
    import torch

    from vmdm.data.build.synth import generate_clip
    from vmdm.eval.run import reencode
    from vmdm.motion.representation import encode
    from vmdm.motion.skeleton import SMPL22

    joints, _, _ = generate_clip("walk", np.random.default_rng(3))
    T = min(len(joints), 160)
    feats = encode(torch.from_numpy(joints[:T]).double(), SMPL22).float()  # [T-1, 263]
    padded = torch.zeros(2, T + 9, feats.shape[-1])
    padded[0, :T - 1] = feats
    padded[0, T - 1:] = 50.0  # garbage after the end must not leak in
    padded[1, :T - 1] = feats
    out, lengths = reencode(padded, torch.tensor([T - 1, T - 1]), SMPL22)
    assert lengths.tolist() == [T - 2, T - 2]
    torch.testing.assert_close(out[0], out[1])
    n = T - 2 - 4 * 20 - 2  # rows beyond the smoothing's reach of the end
    assert n > 10
    torch.testing.assert_close(out[0, :n], feats[:n], atol=2e-4, rtol=0)
    # A feature that contradicts its positions (here: foot contacts flipped) is recomputed.
    bad = padded.clone()
    bad[0, :T - 1, -4:] = 1 - bad[0, :T - 1, -4:]
    torch.testing.assert_close(reencode(bad, torch.tensor([T - 1, T - 1]), SMPL22)[0][0, :n], feats[:n],
                               atol=2e-4, rtol=0)
