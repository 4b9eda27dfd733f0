"""Multi-coil physics: simulated acquisitions, ESPIRiT coil maps, SENSE operators and baselines, poisson-vd masks."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medscore.baselines.sense import magnitude, sense_cg, tune_sense, tv_sense, wavelet_sense
from medscore.errors import InputError
from medscore.metrics import psnr
from medscore.physics import DataConsistency, MaskError, MultiCoilMRI, acceleration, complex_to_channels, make_mask
from medscore.physics.coils import (calibration_width, estimate_smaps, estimate_smaps_volume, map_correlation,
                                    sampling_mask_from_kspace)
from medscore.physics.simulate import random_phase, simulate_multicoil

pytest.importorskip("sigpy")

N = 64


@pytest.fixture(scope="module")
def slice64() -> np.ndarray:
    """A 64x64 magnitude slice in [0, 1] with edges and flat regions (Shepp-Logan)."""
    img = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    return (img / img.max()).astype(np.float32)


@pytest.fixture(scope="module")
def acq4x(slice64: np.ndarray):
    """8-coil 1D random 4x acquisition (centre 16 % = 10 lines) with k-space noise, and its ESPIRiT maps."""
    mask = make_mask("random", (N, N), 4, 0.16, seed=3)
    acq = simulate_multicoil(slice64, num_coils=8, noise_std=0.005, mask=mask, seed=7)
    return acq, estimate_smaps(acq.kspace)


def _op(mask: np.ndarray, smaps: np.ndarray, **kw) -> MultiCoilMRI:
    return MultiCoilMRI(torch.from_numpy(mask), torch.from_numpy(smaps)[None], **kw)


def test_simulation_matches_forward_model_and_noise_level(slice64: np.ndarray) -> None:
    acq = simulate_multicoil(slice64, num_coils=4, noise_std=0.0, seed=2)
    assert acq.kspace.shape == acq.smaps.shape == (4, N, N) and acq.kspace.dtype == np.complex64
    assert acq.mask is None and np.allclose(np.abs(acq.image), slice64, atol=1e-6)
    assert np.allclose((np.abs(acq.smaps) ** 2).sum(0), 1.0, atol=1e-5)
    op = _op(np.ones(N, np.float32), acq.smaps)
    k = op.A(complex_to_channels(torch.from_numpy(acq.image)[None, None]))[0].numpy()
    assert np.abs(k - acq.kspace).max() < 1e-5 * np.abs(acq.kspace).max()
    # noise alone: E|n|^2 = noise_std^2
    noise = simulate_multicoil(np.zeros((N, N)), num_coils=4, noise_std=0.1, seed=2).kspace
    assert abs(np.sqrt(np.mean(np.abs(noise) ** 2)) - 0.1) < 0.003
    assert abs(np.std(noise.real) - 0.1 / np.sqrt(2)) < 0.003


def test_simulation_is_deterministic_for_a_seed(slice64: np.ndarray) -> None:
    mask = make_mask("random", (N, N), 4, 0.16, seed=0)
    a, b = (simulate_multicoil(slice64, num_coils=4, noise_std=0.01, mask=mask, seed=5) for _ in range(2))
    c = simulate_multicoil(slice64, num_coils=4, noise_std=0.01, mask=mask, seed=6)
    assert np.array_equal(a.kspace, b.kspace) and np.array_equal(a.image, b.image)
    assert not np.array_equal(a.kspace, c.kspace) and not np.array_equal(a.image, c.image)
    assert np.array_equal(a.kspace[:, :, mask == 0], np.zeros_like(a.kspace[:, :, mask == 0]))
    p = random_phase((N, N), np.random.default_rng(1))
    assert np.array_equal(p, random_phase((N, N), 1)) and p.dtype == np.float32
    # a smooth field: neighbouring pixels differ by far less than the field's range
    assert np.abs(np.diff(p, axis=0)).max() < 0.1 * (p.max() - p.min())


def test_espirit_recovers_the_true_maps(slice64: np.ndarray, acq4x) -> None:
    acq, est = acq4x
    assert est.shape == acq.smaps.shape and est.dtype == np.complex64
    support = slice64 > 0.05
    assert map_correlation(est, acq.smaps, support) > 0.95
    # the metric can fail: maps of the wrong coils agree far less
    assert map_correlation(np.roll(est, 2, axis=0), acq.smaps, support) < 0.9


def test_espirit_volume_is_slice_by_slice(slice64: np.ndarray, acq4x) -> None:
    acq, est = acq4x
    other = simulate_multicoil(slice64[::-1].copy(), num_coils=8, noise_std=0.005, mask=acq.mask, seed=8)
    vol = estimate_smaps_volume(np.stack([acq.kspace, other.kspace]))
    assert vol.shape == (2, 8, N, N) and vol.dtype == np.complex64
    assert np.allclose(vol[0], est, atol=1e-5)
    assert map_correlation(vol[1], other.smaps, slice64[::-1] > 0.05) > 0.95


def test_map_correlation_ignores_the_per_pixel_factor() -> None:
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((4, 8, 8)) + 1j * rng.standard_normal((4, 8, 8))
    factor = rng.uniform(0.5, 2, (8, 8)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (8, 8)))
    assert map_correlation(maps * factor, maps) == pytest.approx(1.0)
    assert map_correlation(maps.conj(), maps) < 0.95
    cropped = maps.copy()
    cropped[:, :4] = 0  # half the support lost (ESPIRiT crop) counts as disagreement
    assert map_correlation(cropped, maps, np.ones((8, 8), bool)) == pytest.approx(0.5)


def test_calibration_width_and_its_errors() -> None:
    m = np.zeros(N, np.float32)
    m[N // 2 - 6: N // 2 + 6] = 1
    m[::4] = 1
    assert calibration_width(m) == 12
    m2 = np.zeros((N, N), np.float32)
    m2[N // 2 - 5: N // 2 + 5, N // 2 - 7: N // 2 + 7] = 1
    assert calibration_width(m2) == 10
    with pytest.raises(InputError, match="too small to estimate coil maps"):
        calibration_width(make_mask("random", (N, N), 4, 0.04, seed=0))
    k = np.zeros((4, N, N), np.complex64)
    k[:, :, m > 0] = 1
    assert np.array_equal(sampling_mask_from_kspace(k), np.broadcast_to(m, (N, N)))


def test_coil_maps_are_estimated_without_sigpy(acq4x, monkeypatch: pytest.MonkeyPatch) -> None:
    """ESPIRiT is medscore's own on every calibration region: the maps do not need sigpy (or numba)."""
    acq, est = acq4x
    for name in ("sigpy", "sigpy.mri", "sigpy.mri.app"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of sigpy now raises ImportError
    again = estimate_smaps(acq.kspace)
    np.testing.assert_array_equal(again, estimate_smaps(acq.kspace))
    assert map_correlation(again, acq.smaps) > 0.95


def test_sigpy_is_imported_lazily() -> None:
    root = Path(__file__).resolve().parents[1] / "medscore"
    for rel in ("physics/coils.py", "physics/simulate.py", "physics/masks.py", "baselines/sense.py"):
        tree = ast.parse((root / rel).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("sigpy", "numba")], rel


def test_sense_adjointness_with_estimated_maps(acq4x) -> None:
    acq, est = acq4x
    op = _op(acq.mask, est)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, N, N, generator=g)
    y = torch.complex(torch.randn(2, 8, N, N, generator=g), torch.randn(2, 8, N, N, generator=g))
    assert op.adjointness_error(x, y) < 1e-5


def test_multicoil_consistency_keeps_measured_samples(acq4x) -> None:
    # Noiseless data in the range of A (true maps). The projection solves A^H A d = A^H (y - A x) by CG, which
    # converges slowly here (smooth maps, 1D 4x: A^H A is ill-conditioned), so the measured samples are kept to
    # the CG tolerance only: max |A x - y| / max |y| < 2e-3 after 300 iterations (float32; 0.05 with the
    # default 10, 0.004 with 100).
    acq, _ = acq4x
    clean = simulate_multicoil(np.abs(acq.image), num_coils=8, noise_std=0.0, mask=acq.mask, seed=7)
    op = _op(acq.mask, clean.smaps, cg_iters=300, cg_tol=1e-7)
    y = torch.from_numpy(clean.kspace)[None]
    dc = DataConsistency(op, y)
    x0 = torch.randn(1, 2, N, N, generator=torch.Generator().manual_seed(1))
    out = dc.clean(x0, 0.1)
    err = (op.A(out) - y).abs().max() / y.abs().max()
    assert err < 2e-3
    assert (op.A(x0) - y).abs().max() / y.abs().max() > 0.1  # the start was far from the data


def test_sense_and_cs_beat_zero_filled(slice64: np.ndarray, acq4x) -> None:
    acq, est = acq4x
    op = _op(acq.mask, est)
    y = torch.from_numpy(acq.kspace)[None]
    zf = psnr(slice64, magnitude(op.A_adjoint(y))[0])
    for fn, kw in ((sense_cg, {"lam": 1e-3}), (wavelet_sense, {"lam": 1e-3, "n_iter": 40}),
                   (tv_sense, {"lam": 1e-3, "n_iter": 80})):
        got = psnr(slice64, magnitude(fn(y, op, **kw))[0])
        assert got > zf + 1.0, (fn.__name__, got, zf)


def test_tune_sense_picks_from_the_grid(slice64: np.ndarray, acq4x) -> None:
    acq, est = acq4x
    probs = [(torch.from_numpy(acq.kspace)[None], _op(acq.mask, est))]
    best = tune_sense("sense", probs, [slice64], {"lam": [0.0, 1e-2, 10.0]}, n_iter=20)
    assert best["lam"] in (0.0, 1e-2)  # lam = 10 shrinks the image towards 0
    with pytest.raises(ValueError, match="unknown method"):
        tune_sense("grappa", probs, [slice64])


def test_poisson_vd_acceleration_calibration_and_density() -> None:
    shape, accel, center = (96, 96), 8, 0.125
    state = np.random.get_state()[1].copy()
    m = make_mask("poisson-vd", shape, accel, center, seed=4)
    assert np.array_equal(state, np.random.get_state()[1])  # the global NumPy RNG is left alone
    assert m.shape == shape and m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
    assert abs(acceleration(m) - accel) < 0.15  # sigpy bisects the density slope to within 0.1
    assert calibration_width(m) >= 12 and m[shape[0] // 2 - 6: shape[0] // 2 + 6, 42:54].all()
    assert np.array_equal(m, make_mask("poisson-vd", shape, accel, center, seed=4))
    assert not np.array_equal(m, make_mask("poisson-vd", shape, accel, center, seed=5))
    # the usual pattern is much sparser near the centre (outside the calibration block) than "poisson"
    old = make_mask("poisson", shape, accel, center, seed=4)
    yy, xx = np.mgrid[:96, :96] - 48
    ring = (np.hypot(yy, xx) > 9) & (np.hypot(yy, xx) < 16)
    assert m[ring].mean() < 0.75 * old[ring].mean()
    with pytest.raises(MaskError, match="cannot reach acceleration"):
        make_mask("poisson-vd", (16, 16), 15.5, 0.25, seed=0)  # 4x4 block alone: 16x; one more sample: 15.06x


def test_poisson_vd_is_sigpys_pattern() -> None:
    from sigpy.mri import poisson

    for shape, accel, center, seed in (((64, 80), 4, 0.16, 2), ((96, 96), 8, 0.125, 1)):
        calib = (round(shape[0] * center), round(shape[1] * center))
        assert np.array_equal(make_mask("poisson-vd", shape, accel, center, seed=seed),
                              poisson(shape, accel, calib=calib, seed=seed, dtype=np.float32))
    m = make_mask("poisson-vd", (96, 96), 8, 0.125, seed=0)  # sigpy's own bisection fails for this seed
    assert abs(acceleration(m) - 8) < 0.1
