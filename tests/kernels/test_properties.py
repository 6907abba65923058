"""Property tests: random shapes, layouts, options and values; the C++ kernels
agree with the reference on the loss and every gradient."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmdm_kernels as vk

from .problems import make_problem
from .runners import assert_all_close, run_ray_targets, run_reproj_vel, run_velocity3d

pytestmark = pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))

PROFILE = settings(max_examples=200, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])

problems = st.fixed_dictionaries(
    dict(
        B=st.integers(1, 3),
        T=st.integers(1, 12),
        J=st.integers(1, 7),
        per_frame=st.booleans(),
        intrinsics=st.booleans(),
        zero_weight_frac=st.sampled_from([0.0, 0.3, 1.0]),
        distance=st.floats(0.6, 8.0),
        noise_px=st.floats(0.5, 50.0),  # exact keypoints: test_edge_cases
        seed=st.integers(0, 2**16),
    )
)


def _make(d):
    return make_problem(d["B"], d["T"], d["J"], per_frame=d["per_frame"], intrinsics=d["intrinsics"],
                        zero_weight_frac=d["zero_weight_frac"], distance=d["distance"], noise_px=d["noise_px"],
                        seed=d["seed"])


@PROFILE
@given(d=problems, depth_weight=st.sampled_from(["none", "sample", "point"]),
       power=st.sampled_from([None, 0.5, 1.0, 2.0]), z_min=st.sampled_from([0.0, 0.5, 2.0]),
       which=st.sampled_from(["both", "pos", "vel"]))
def test_reproj_vel(d, depth_weight, power, z_min, which):
    p = _make(d)
    kw = dict(depth_power=power, z_min=z_min, which=which)
    assert_all_close(run_reproj_vel("cpp", p, depth_weight, **kw), run_reproj_vel("reference", p, depth_weight, **kw),
                     1e-8)


@PROFILE
@given(d=problems)
def test_velocity3d(d):
    p = _make(d)
    assert_all_close(run_velocity3d("cpp", p), run_velocity3d("reference", p), 1e-9)


@PROFILE
@given(d=problems)
def test_ray_targets(d):
    p = _make(d)
    assert_all_close(run_ray_targets("cpp", p), run_ray_targets("reference", p), 1e-9)
