"""k-space masks: MONAI-backed 1D patterns, Poisson-disc, validation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

from medscore.physics import MaskError, acceleration, expand_mask, make_mask, validate_mask


def centre_lines(n: int, frac: float) -> slice:
    n_low = int(round(n * frac))
    return slice((n - n_low + 1) // 2, (n - n_low + 1) // 2 + n_low)


@pytest.mark.parametrize("pattern", ["random", "equispaced"])
@pytest.mark.parametrize("accel,center", [(4, 0.08), (8, 0.04)])
def test_lines_acceleration_and_centre(pattern: str, accel: float, center: float) -> None:
    w = 320
    masks = [make_mask(pattern, (64, w), accel, center, seed=s) for s in range(8)]
    for m in masks:
        assert m.shape == (w,) and m.dtype == np.float32
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert m[centre_lines(w, center)].all() and m[w // 2] == 1
        assert abs(acceleration(m) - accel) / accel < (0.05 if pattern == "equispaced" else 0.3)
    mean_accel = w / np.mean([m.sum() for m in masks])
    assert abs(mean_accel - accel) / accel < 0.1


@pytest.mark.parametrize("pattern,cls", [("random", RandomKspaceMask), ("equispaced", EquispacedKspaceMask)])
def test_lines_match_monai(pattern: str, cls: type) -> None:
    t = cls(center_fractions=[0.08], accelerations=[4], spatial_dims=2, is_complex=True)
    t.set_random_state(seed=11)
    t(torch.zeros(1, 8, 96, 2))
    assert np.array_equal(make_mask(pattern, (8, 96), 4, 0.08, seed=11), np.asarray(t.mask).reshape(96))


@pytest.mark.parametrize("pattern", ["random", "equispaced", "poisson"])
def test_seeded(pattern: str) -> None:
    a = make_mask(pattern, (64, 96), 4, 0.08, seed=1)
    assert np.array_equal(a, make_mask(pattern, (64, 96), 4, 0.08, seed=1))
    assert not np.array_equal(a, make_mask(pattern, (64, 96), 4, 0.08, seed=2))


@pytest.mark.parametrize("shape", [(256, 256), (64, 96), (255, 130)])
@pytest.mark.parametrize("accel", [2, 4, 8, 12])
def test_poisson_acceleration_and_centre(shape: tuple[int, int], accel: float) -> None:
    center = 0.08
    m = make_mask("poisson", shape, accel, center, seed=3)
    assert m.shape == shape and m.dtype == np.float32
    assert abs(acceleration(m) - accel) / accel < 0.1
    assert m[centre_lines(shape[0], center), centre_lines(shape[1], center)].all()


def test_poisson_variable_density_and_fast() -> None:
    t0 = time.perf_counter()
    m = make_mask("poisson", (256, 256), 6, 0.06, seed=0)
    assert time.perf_counter() - t0 < 2.0
    ky, kx = np.meshgrid(np.arange(256) - 128, np.arange(256) - 128, indexing="ij")
    rho = np.hypot(ky, kx) / 128
    inner, middle, outer = m[rho < 0.3].mean(), m[(rho > 0.4) & (rho < 0.6)].mean(), m[rho > 0.8].mean()
    assert inner > middle > outer > 0
    # hard core: outside the fully sampled middle no two samples are direct neighbours
    far = (m > 0) & (rho > 0.6)
    assert not (far[:, 1:] & far[:, :-1]).any() and not (far[1:] & far[:-1]).any()


def test_make_mask_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown mask pattern"):
        make_mask("spiral", (64, 64), 4, 0.08)
    with pytest.raises(ValueError, match="1/accel"):
        make_mask("random", (64, 64), 8, 0.2)
    with pytest.raises(ValueError, match="accel"):
        make_mask("equispaced", (64, 64), 0.5, 0.08)


def test_validate_mask_errors() -> None:
    shape = (64, 64)
    with pytest.raises(MaskError) as e:
        validate_mask(np.ones(5), shape)
    assert str(e.value) == "mask shape (5,) does not match the scan: expected (W,) = (64,) or (H, W) = (64, 64)"
    assert "\n" not in str(e.value)
    with pytest.raises(MaskError, match=r"\(H, W\) = \(64, 48\)"):
        validate_mask(np.ones((48, 64)), (1, 2, 64, 48))
    bad = np.ones(64)
    bad[3] = 0.5
    with pytest.raises(MaskError, match="0 or 1"):
        validate_mask(bad, shape)
    with pytest.raises(MaskError, match="all zeros"):
        validate_mask(np.zeros((64, 64)), shape)
    for v in (np.nan, np.inf):
        bad = np.ones(64)
        bad[0] = v
        with pytest.raises(MaskError, match="NaN or inf"):
            validate_mask(bad, shape)
    assert issubclass(MaskError, ValueError)


def test_validate_and_expand_accept_tensors() -> None:
    m = make_mask("random", (32, 48), 4, 0.08, seed=0)
    out = validate_mask(torch.from_numpy(m), (32, 48))
    assert out.dtype == np.float32 and np.array_equal(out, m)
    full = expand_mask(m, (32, 48))
    assert full.shape == (32, 48) and (full == m[None]).all()
    assert acceleration(m) == pytest.approx(acceleration(full))
    p = make_mask("poisson", (32, 48), 3, 0.1, seed=0)
    assert np.array_equal(expand_mask(p, (32, 48)), p)
