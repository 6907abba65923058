"""Denoiser and diffusion: shapes, masks, guidance, x0 parameterisation, samplers."""

import pytest
import torch

from vmdm.model.diffusion import Diffusion
from vmdm.model.denoiser import PRESETS, MotionDenoiser


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MotionDenoiser.from_preset("tiny", feature_dim=263, text_dim=16, dropout=0.0).eval()


def _inputs(B=3, F=24):
    x = torch.randn(B, F, 263)
    mask = torch.ones(B, F, dtype=torch.bool)
    mask[1, 16:] = False
    mask[2, 8:] = False
    return x, torch.tensor([0, 10, 49]), torch.randn(B, 16), mask


def test_shapes_and_presets():
    for name in PRESETS:
        m = MotionDenoiser.from_preset(name, feature_dim=263, text_dim=16)
        assert m.cfg.layers == PRESETS[name]["layers"]
    x, t, text, mask = _inputs()
    assert MotionDenoiser.from_preset("tiny", text_dim=16)(x, t, text, mask).shape == x.shape
    with pytest.raises(ValueError, match="model preset: expected one of"):
        MotionDenoiser.from_preset("huge")
    with pytest.raises(ValueError, match=r"x_t: expected feature dim 263, got shape \(3, 24, 10\)"):
        MotionDenoiser.from_preset("tiny", text_dim=16)(x[..., :10], t, text, mask)


def test_padding_is_masked_out_of_attention(model):
    x, t, text, mask = _inputs()
    out = model(x, t, text, mask)
    x2 = x.clone()
    x2[1, 16:] = 1e3 * torch.randn_like(x2[1, 16:])  # garbage in padded frames
    out2 = model(x2, t, text, mask)
    torch.testing.assert_close(out2[1, :16], out[1, :16], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out2[0], out[0], rtol=1e-5, atol=1e-5)


def test_dropped_text_ignores_the_caption_and_guidance_combines_both(model):
    x, t, text, mask = _inputs()
    drop = torch.ones(3, dtype=torch.bool)
    a = model(x, t, text, mask, drop_text=drop)
    b = model(x, t, torch.randn_like(text), mask, drop_text=drop)
    torch.testing.assert_close(a, b)
    cond, uncond = model(x, t, text, mask), a
    assert (cond - uncond).abs().max() > 1e-4
    torch.testing.assert_close(model.guided(x, t, text, mask, 1.0), cond)
    torch.testing.assert_close(model.guided(x, t, text, mask, 2.5), uncond + 2.5 * (cond - uncond),
                               rtol=1e-4, atol=1e-5)


def test_text_embeddings_are_standardised_whatever_their_scale(model):
    """A unit-norm sentence embedding (MiniLM) and the same direction at CLIP-like scale
    condition the model identically; without text_norm they do not."""
    x, t, text, mask = _inputs()
    unit = text / text.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(model(x, t, unit, mask), model(x, t, 30 * unit, mask), rtol=1e-4, atol=1e-4)
    raw = MotionDenoiser.from_preset("tiny", feature_dim=263, text_dim=16, dropout=0.0, text_norm=False).eval()
    assert (raw(x, t, unit, mask) - raw(x, t, 30 * unit, mask)).abs().max() > 1e-2


def test_x0_parameterisation_round_trip():
    d = Diffusion(50)
    x0, eps = torch.randn(4, 10, 7), torch.randn(4, 10, 7)
    t = torch.tensor([0, 5, 25, 49])
    x_t = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.eps_from_x0(x_t, t, x0), eps, rtol=1e-4, atol=1e-4)
    # The posterior at t has the mean of the forward process one step earlier.
    mean, var = d.posterior(x_t, t, x0)
    assert (var >= 0).all() and var[0].abs().max() < 1e-6
    assert d.alpha_bar[0] > 0.99 and d.alpha_bar[-1] < 1e-3  # cosine schedule ends near pure noise
    assert torch.all(d.alpha_bar[1:] < d.alpha_bar[:-1])


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 10), ("ddim", 1)])
def test_samplers_recover_a_perfect_prediction_and_are_seeded(sampler, steps):
    d = Diffusion(50)
    target = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])

    def perfect(x_t, t):
        return target

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return d.sample(perfect, target.shape, "cpu", sampler=sampler, sample_steps=steps, generator=g, mask=mask)

    out = run(0)
    torch.testing.assert_close(out, target * mask[..., None])
    assert torch.equal(run(3), run(3))


def test_samplers_visit_the_steps_timesteps_lists():
    d = Diffusion(50)
    seen = []

    def record(x0, t):
        seen.append(int(t[0]))
        return x0

    for sampler, steps in (("ddim", 10), ("ddim", 50), ("ddim", 1), ("ddpm", 7)):
        seen.clear()
        d.sample(lambda x, t: torch.zeros_like(x), (1, 3, 2), "cpu", sampler=sampler, sample_steps=steps, guide=record)
        ts = d.timesteps(sampler, steps)
        assert seen == ts[:len(seen)] and (seen[-1] == 0 or len(ts) == 1)
    assert d.timesteps("ddim", 10) == [49, 44, 38, 33, 27, 22, 16, 11, 5, 0]
    assert d.timesteps("ddpm", 7) == list(range(49, -1, -1))  # every step, whatever is asked
    with pytest.raises(ValueError, match="sampler"):
        d.timesteps("euler")


def test_sampling_with_the_model_is_deterministic_given_a_seed(model):
    d = Diffusion(50)
    x, t, text, mask = _inputs()

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return d.sample(lambda xt, tt: model.guided(xt, tt, text, mask, 2.5), x.shape, "cpu", sample_steps=5,
                        generator=g, mask=mask)

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a[2, 8:] == 0).all()


def test_skip_preconditioning_passes_the_noisy_input_through_at_low_noise():
    torch.manual_seed(0)
    m = MotionDenoiser.from_preset("tiny", feature_dim=263, text_dim=16, dropout=0.0, skip_steps=50).eval()
    x, _, text, mask = _inputs()
    with torch.no_grad():
        m.output.weight.zero_()
        m.output.bias.fill_(1.0)  # network output 1 everywhere
        ab = Diffusion(50).alpha_bar
        for step in (0, 25, 49):
            t = torch.full((3,), step)
            expected = ab[step].sqrt() * x + (1 - ab[step]).sqrt()
            torch.testing.assert_close(m(x, t, text, mask), expected, rtol=1e-5, atol=1e-5)


def test_skip_blend_stays_float32_under_bf16_autocast():
    # alpha_bar at t = 0 rounds to exactly 1 in bfloat16, which would return x_t unchanged
    # and give the network no gradient from those samples.
    torch.manual_seed(0)
    m = MotionDenoiser.from_preset("tiny", feature_dim=263, text_dim=16, dropout=0.0, skip_steps=50)
    x, _, text, mask = _inputs()
    t = torch.zeros(3, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, t, text, mask)
    assert out.dtype == torch.float32
    assert (out - x).abs().max() > 1e-3  # the network's correction survives
    out.square().mean().backward()
    assert m.output.weight.grad.abs().max() > 0
    ab = Diffusion(50).alpha_bar[0]
    assert ab.to(torch.bfloat16) == 1.0  # what the old bfloat16 blend used
