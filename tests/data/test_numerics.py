import numpy as np
import pytest

from vmdm.data.build.fingerprint import dataset_hash
from vmdm.data.build.numerics import STORED_BITS, round_significand


def test_round_significand_keeps_bits_and_is_idempotent():
    x = np.random.default_rng(0).standard_normal(10000) * np.exp(np.random.default_rng(1).uniform(-8, 8, 10000))
    r = round_significand(x)
    assert r.dtype == np.float32
    rel = np.abs(r.astype(np.float64) - x) / np.abs(x)
    assert rel.max() <= 2.0 ** -STORED_BITS * (1 + 1e-12)  # half a unit of the 18th bit, mantissa >= 0.5
    assert rel.max() > 2.0 ** -(STORED_BITS + 3)  # it does round
    np.testing.assert_array_equal(round_significand(r), r)
    # The low float32 bits of every stored value are zero.
    assert not np.any(r.view(np.uint32) & np.uint32((1 << (23 - STORED_BITS + 1)) - 1))


def test_round_significand_absorbs_last_bit_differences():
    x = np.random.default_rng(2).standard_normal(100000)
    nudged = x * (1 + 4 * np.finfo(np.float64).eps)  # what another CPU's libm may return
    assert np.mean(round_significand(x) != round_significand(nudged)) < 1e-4


def test_round_significand_special_values_and_bad_bits():
    r = round_significand([0.0, -0.0, np.inf, -np.inf, np.nan, -3.0])
    assert r[0] == 0 and np.isinf(r[2]) and r[3] < 0 and np.isnan(r[4]) and r[5] == -3.0
    with pytest.raises(ValueError, match="bits"):
        round_significand([1.0], bits=30)


def test_dataset_hash_ignores_zip_timestamps_and_paths(tmp_path):
    import os
    import time

    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        np.savez(d / "obs_train.npz", keypoints=np.arange(6.0).reshape(2, 3))
        (d / "train.txt").write_text("000001\n")
        (d / "vmdm_2d.json").write_text(f'{{"corpus": "{d}"}}')
        if name == "a":
            os.utime(d / "obs_train.npz", (0, 0))
            time.sleep(1.1)  # zip members of the second file get another timestamp
    assert dataset_hash(tmp_path / "a") == dataset_hash(tmp_path / "b")
    (tmp_path / "b" / "train.txt").write_text("000002\n")
    assert dataset_hash(tmp_path / "a") != dataset_hash(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="dataset root"):
        dataset_hash(tmp_path / "missing")


def test_numpy_pin_names_only_the_avx512_paths_this_cpu_has(monkeypatch):
    import os
    import subprocess
    import sys

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    from vmdm.data.build import numerics

    pin = numerics.numpy_pin()
    names = pin.get("NPY_DISABLE_CPU_FEATURES", "").split()
    have = [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and (f == "X86_V4" or f.startswith("AVX512"))]
    assert names == have
    # In a child started with it, numpy takes none of them; a value already set is kept.
    seen = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, env: seen.append(env) or subprocess.CompletedProcess(cmd, 0))
    numerics.run_pinned("vmdm.data.build.prepare", ["--help"])
    assert seen[0].get("NPY_DISABLE_CPU_FEATURES", "") == pin.get("NPY_DISABLE_CPU_FEATURES", "")
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "X86_V3")
    numerics.run_pinned("vmdm.data.build.prepare", ["--help"])
    assert seen[1]["NPY_DISABLE_CPU_FEATURES"] == "X86_V3"
    monkeypatch.undo()
    if names:
        code = ("from numpy._core._multiarray_umath import __cpu_dispatch__ as d, __cpu_features__ as f; "
                "print(' '.join(x for x in d if f.get(x)))")
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **pin},
                             capture_output=True, text=True, check=True).stdout.split()
        assert not set(out) & set(names)
