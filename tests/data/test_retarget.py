"""HumanML3D's retargeting against HumanML3D's own target skeleton and on real CMU motion."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vmdm.motion.representation import decode, encode
from vmdm.motion.retarget import HUMANML3D_BONE_LENGTHS, humanml3d_offsets, uniform_skeleton
from vmdm.motion.skeleton import KIT21, SMPL22

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SAMPLE = SHARED / "humanml3d_sample" / "new_joints" / "012314.npy"


def _lengths(x):
    return np.stack([np.linalg.norm(x[:, j] - x[:, SMPL22.parents[j]], axis=-1) for j in range(1, 22)], axis=1)


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"HumanML3D sample not found at {SAMPLE}")
def test_target_lengths_are_humanml3d_s_and_retargeting_its_clip_changes_nothing():
    x = np.load(SAMPLE).astype(np.float64)
    np.testing.assert_allclose(_lengths(x)[0], HUMANML3D_BONE_LENGTHS, atol=6e-6)
    y = uniform_skeleton(x)
    # Its clip is on the target already: only the 5e-6 m rounding of the stored lengths moves.
    assert np.abs(y - x).max() < 2e-4


def test_bones_keep_direction_and_take_the_target_lengths():
    g = np.random.default_rng(0)
    rest = np.zeros((22, 3))
    off = np.asarray(SMPL22.offsets) * 1.3  # a body 30 % larger
    for j in range(1, 22):
        rest[j] = rest[SMPL22.parents[j]] + off[j]
    x = rest[None] + 0.02 * g.standard_normal((30, 22, 3)).cumsum(0) + np.array([0.0, 1.2, 0.0])
    y = uniform_skeleton(x)
    np.testing.assert_allclose(_lengths(y), np.broadcast_to(HUMANML3D_BONE_LENGTHS, (30, 21)), atol=1e-12)
    for j in range(1, 22):
        a = x[:, j] - x[:, SMPL22.parents[j]]
        b = y[:, j] - y[:, SMPL22.parents[j]]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert (cos > 1 - 1e-12).all(), j
    src_leg = np.linalg.norm(x[0, 5] - x[0, 2]) + np.linalg.norm(x[0, 8] - x[0, 5])
    ratio = (HUMANML3D_BONE_LENGTHS[4] + HUMANML3D_BONE_LENGTHS[7]) / src_leg
    np.testing.assert_allclose(y[:, 0], x[:, 0] * ratio, atol=1e-12)
    # torch in, torch out; the features of the retargeted clip decode back to it.
    t = uniform_skeleton(torch.from_numpy(x).float())
    assert t.dtype == torch.float32 and torch.allclose(t.double(), torch.from_numpy(y), atol=1e-5)
    f = encode(torch.from_numpy(y), SMPL22)
    assert torch.isfinite(f).all() and decode(f, SMPL22).shape == (29, 22, 3)
    assert humanml3d_offsets().shape == (22, 3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"joints: expected shape \[T, 22, 3\]"):
        uniform_skeleton(np.zeros((4, 21, 3)))
    with pytest.raises(ValueError, match="target_lengths: required for skeleton 'kit21'"):
        uniform_skeleton(np.zeros((4, 21, 3)), skeleton=KIT21)
    with pytest.raises(ValueError, match="target_lengths: expected 22 lengths"):
        uniform_skeleton(np.ones((4, 22, 3)), target_lengths=np.ones(5))


@pytest.mark.skipif(not (SHARED / "cmu_humanml" / "asfamc").is_dir(), reason="CMU mocap not found in shared data")
def test_real_cmu_motion_on_the_humanml3d_skeleton():
    from vmdm.data.formats.cmu import load_cmu_testset

    clip = load_cmu_testset(SHARED / "cmu_humanml")[0]
    x = np.asarray(clip.joints, dtype=np.float64)
    y = uniform_skeleton(x)
    np.testing.assert_allclose(_lengths(y), np.broadcast_to(HUMANML3D_BONE_LENGTHS, (len(y), 21)), atol=1e-9)
    # Upright and the same way round: head above pelvis, left hip on the same side.
    assert (y[:, 15, 1] > y[:, 0, 1]).all()
    side = np.sign(((x[:, 1] - x[:, 2]) * (y[:, 1] - y[:, 2])).sum(-1))
    assert (side > 0).all()
