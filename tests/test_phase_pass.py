"""Two-pass presets: the ``prepass`` field, its cost, and the multi-coil solve that moves a first estimate's phase
into the coil maps and rotates the result back to the convention of the maps given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscore.physics import MultiCoilMRI, birdcage_smaps, fft2c, normalize_smaps
from medscore.sampling import PRESETS, Preset
from medscore.solvers import SamplerOptions
from medscore.tasks import reconstruct_mri
from medscore.tasks.mri import MULTICOIL_KEY
from test_solvers import GaussianPrior

H = W = 32
TWO = Preset("two", "pnp", 6, {"renoise": 0.0, "flips": True}, samples=2, sigma_start=0.3,
             prepass={"num_levels": 4, "samples": 1, "sigma_start": 1.0})


def test_first_pass_applies_the_prepass_fields_and_the_cost_counts_both_passes():
    first = TWO.first_pass()
    assert first is not None and (first.num_levels, first.samples, first.sigma_start) == (4, 1, 1.0)
    assert first.settings == TWO.settings and not first.prepass and PRESETS["fast"].first_pass() is None
    assert TWO.total_nfe() == TWO.nfe() * 2 + first.nfe() == 6 * 2 + 4
    assert Preset.from_dict("two", TWO.to_dict()) == TWO  # travels in model.json
    with pytest.raises(ValueError, match="prepass overrides unknown"):
        Preset("bad", "pnp", 6, prepass={"levels": 3})


@pytest.mark.parametrize("name", ["fast", "default"])
def test_built_in_multicoil_presets_stay_within_their_budgets(name):
    preset = PRESETS[name].for_task(MULTICOIL_KEY)
    assert preset.total_nfe() <= {"fast": 20, "default": 50}[name]


def _phased_acquisition(coils: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-space (1, K, H, W) of a disc with a smooth phase, 1D 2x lines with a full centre, the true maps, the image."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    image = ((xx**2 + yy**2) < 0.7).float() * (0.6 + 0.3 * xx) * torch.polar(torch.ones(()), 1.2 * yy + 0.5 * xx)
    maps = torch.from_numpy(birdcage_smaps(coils, (H, W)).astype(np.complex64))
    mask = torch.zeros(W)
    mask[::2], mask[W // 2 - 4: W // 2 + 4] = 1.0, 1.0
    return fft2c(maps * image)[None] * mask, mask, maps[None], image


def test_two_pass_counts_every_evaluation_and_keeps_the_measured_data():
    """A zero-mean Gaussian prior counts its calls: the cost reported is both passes', and the result is consistent
    with the measurements as one pass is (SENSE data consistency with the rotated maps is the same model)."""
    y, mask, maps, _ = _phased_acquisition()
    prior = GaussianPrior(0.0, 0.5)
    prior.presets = {"two": TWO.to_dict()}
    res = reconstruct_mri(prior, y, mask, SamplerOptions(preset="two"), real_image=False, smaps=maps, noise_std=0.01)
    assert prior.calls == 4 + 6 and res.prepass_nfe == 4 and res.total_nfe == 4 + 6 * 2 and res.samples == 2
    residual = MultiCoilMRI(mask, maps).A(res.mean) - y
    assert float(residual.abs().norm() / y.abs().norm()) < 0.1


def test_two_pass_output_keeps_the_phase_convention_of_the_maps_given():
    """Maps times an arbitrary smooth phase field c encode the image as x / c; the two-pass result must be that
    image, not the nearly real one the main pass solved for (without the rotation back, the error is the spread)."""
    y, mask, maps, image = _phased_acquisition()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    c = torch.polar(torch.ones(()), 0.8 - 1.5 * xx + 0.7 * yy * xx)
    given = normalize_smaps(maps * c)
    prior = GaussianPrior(0.0, 0.5)
    prior.presets = {"two": TWO.to_dict()}
    res = reconstruct_mri(prior, y, mask, SamplerOptions(preset="two"), real_image=False, smaps=given,
                          noise_std=0.01)
    est = torch.complex(res.mean[0, 0], res.mean[0, 1])
    truth = (given.conj() * maps * image).sum(1)[0]  # the image as the given maps encode it
    inside = image.abs() > 0.3
    error = torch.angle(est * truth.conj())[inside].abs().mean()
    spread = torch.angle(truth)[inside].abs().mean()
    assert error < 0.2 * spread, (float(error), float(spread))


def test_a_nested_prepass_is_a_third_pass_with_its_cost_and_one_progress_count():
    """``prepass`` inside ``prepass`` runs three passes; the cost counts all three, and the level callback counts
    the levels of all passes as one rising sequence that ends at its total."""
    three = TWO.with_changes(prepass={"num_levels": 3, "samples": 1, "sigma_start": 0.3,
                                      "prepass": {"num_levels": 4, "sigma_start": 1.0}})  # each inherits the next
    assert three.first_pass().first_pass().num_levels == 4 and three.total_nfe() == 6 * 2 + 3 + 4
    y, mask, maps, _ = _phased_acquisition()
    prior = GaussianPrior(0.0, 0.5)
    prior.presets = {"three": three.to_dict()}
    seen: list[tuple[int, int]] = []
    res = reconstruct_mri(prior, y, mask, SamplerOptions(preset="three"), real_image=False, smaps=maps,
                          noise_std=0.01, callback=lambda i, total: seen.append((i, total)))
    assert prior.calls == 4 + 3 + 6 and res.total_nfe == 4 + 3 + 12
    assert [i for i, _ in seen] == list(range(13)) and {t for _, t in seen} == {13}
