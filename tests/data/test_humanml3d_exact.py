"""The encoder against HumanML3D's own files: clip 012314 as HumanML3D ships it.

``new_joint_vecs/012314.npy`` was written by HumanML3D's ``process_file`` and
``new_joints/012314.npy`` is what HumanML3D's ``recover_from_ric`` gives for it, so
encoding the joints must give the features back (HumanML3D's own code does so to at most
1.5e-4 mean and 1.3e-2 max per channel group; the max is in the rotations of bones that
point almost opposite their rest direction, where the 6D rotation is ill-conditioned).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import vmdm_kernels as vk
from vmdm.motion.representation import channel_groups, decode, encode
from vmdm.motion.skeleton import SMPL22

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "humanml3d_sample"
pytestmark = pytest.mark.skipif(not (SAMPLE / "new_joints" / "012314.npy").is_file(),
                                reason=f"HumanML3D sample not found at {SAMPLE} (shared data folder absent)")
GROUPS = ("root_rot_vel", "root_lin_vel", "root_y", "ric", "rot", "local_vel", "contacts")

BACKENDS = ["reference",
            pytest.param("cpp", marks=pytest.mark.skipif(not vk.backends()["cpp"].available,
                                                         reason=str(vk.backends()["cpp"]))),
            pytest.param("cuda", marks=pytest.mark.skipif(not vk.backends()["cuda"].available,
                                                          reason=str(vk.backends()["cuda"])))]


def _sample():
    return np.load(SAMPLE / "new_joints" / "012314.npy"), np.load(SAMPLE / "new_joint_vecs" / "012314.npy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encode_reproduces_humanml3d_features(backend, dtype):
    joints, vecs = _sample()
    device = "cuda" if backend == "cuda" else "cpu"
    x = torch.from_numpy(joints).to(device, dtype)
    with torch.no_grad():
        got = encode(x, SMPL22, backend=backend).double().cpu().numpy()
    want = vecs[: len(got)]  # T joints give T - 1 rows; the file's last row needs a frame it does not ship
    assert got.shape == (169, 263)
    groups = channel_groups(SMPL22)
    report = {}
    for name in GROUPS:
        err = np.abs(got[:, groups[name]] - want[:, groups[name]])
        report[name] = (float(err.mean()), float(err.max()))
    bad = {k: v for k, v in report.items() if v[0] > 1e-3 or v[1] > 2e-2}
    assert not bad, f"groups off HumanML3D's features (mean, max |error|): {bad}; all: {report}"


def test_decode_reproduces_humanml3d_joints():
    joints, vecs = _sample()
    got = decode(vecs.astype(np.float64), SMPL22)
    assert np.abs(got - joints).max() < 1e-5


def test_round_trip_through_humanml3d_features():
    joints, _ = _sample()
    x = torch.from_numpy(joints).double()
    back = decode(encode(x, SMPL22, backend="reference"), SMPL22)
    # The clip is on HumanML3D's canonical frame already: decoding gives the joints back.
    torch.testing.assert_close(back, x[:-1], rtol=0, atol=1e-5)  # the file is float32


def test_smoothing_is_what_makes_the_features_match():
    """Without HumanML3D's smoothing the root channels are far off: the test above can fail."""
    joints, vecs = _sample()
    got = encode(torch.from_numpy(joints).double(), SMPL22, facing_sigma=0.0, backend="reference").numpy()
    sl = channel_groups(SMPL22)["root_rot_vel"]
    assert np.abs(got[:, sl] - vecs[:169, sl]).mean() > 1e-2


# --------------------------------------------------------------------------- stale artefacts


def test_artefacts_of_the_old_convention_are_refused(tmp_path):
    """Everything derived from features records their convention; the old one is refused by name."""
    import json

    from vmdm.data.dataset import check_corpus_convention
    from vmdm.motion.representation import (FEATURE_CONVENTION, FeatureConventionError, check_feature_convention,
                                          feature_convention_record)

    assert feature_convention_record()["feature_convention"] == FEATURE_CONVENTION == 2
    check_feature_convention(feature_convention_record(), "new")
    with pytest.raises(FeatureConventionError, match="old.pt: made from motion features of convention 1"):
        check_feature_convention({"format": 2}, "old.pt")  # written before conventions were recorded
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "meta.jsonl").write_text("")
    with pytest.raises(FeatureConventionError, match="rebuild"):
        check_corpus_convention(corpus)
    (corpus / "features.json").write_text(json.dumps(feature_convention_record()))
    check_corpus_convention(corpus)
    check_corpus_convention(SAMPLE)  # a HumanML3D folder from elsewhere: HumanML3D's features
