"""Multi-coil accelerated MRI on simulated acquisitions, with coil maps estimated from the measured data.

Each magnitude slice gets a realistic phase, birdcage coil maps and complex k-space noise
(:func:`medscore.physics.simulate_multicoil`), is undersampled by the spec's mask, and its coil maps are
estimated by ESPIRiT from the undersampled k-space alone (:func:`medscore.physics.estimate_smaps`: the whole fully
sampled centre),
their phase chosen so the image they encode is close to real (:mod:`medscore.tasks.coil_phase`: the calibration
region's phase, refined by that of a short TV-CS reconstruction): no fully sampled
data, no true maps and no magnitude-only undersampling reach any method (the "implicit data crime" of
Shimron et al., PNAS 2022). medscore solves for the complex image (two channels, the
magnitude prior applied to each) with SENSE data consistency; the classical methods (SENSE-CG, L1-wavelet
and TV CS) use the same estimated maps. Everything is scored on the magnitude against the true magnitude.

ESPIRiT needs a fully sampled centre block of at least ``MIN_CALIB`` samples: a spec whose centre fraction
gives fewer lines on the image at hand is widened to the smallest centre that does, and on images so small
that this centre alone exceeds the spec's sampling rate the acceleration is lowered (see
:meth:`MultiCoilTask.calibrated_mask`; the benchmark's specs at 151 x 187 need neither).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..physics import MultiCoilMRI, expand_mask, ifft2c, make_mask, map_correlation, simulate_multicoil
from .coil_phase import estimate_reconstruction_maps
from ..physics.coils import MIN_CALIB, calibration_width
from ..solvers import LevelCallback, SamplerOptions, ScoreModel, SolverResult
from .base import ImageStack, KSpaceStack, Method, Problem, Stack, StackSolve, TaskSpec, register_task
from .measured import prepare_measured
from .mri import MULTICOIL_KEY, MRIInputs, MRITask

__all__ = ["MultiCoilTask", "MultiCoilSpec", "MultiCoilInputs", "MultiCoilProblem", "Acquisition",
           "root_sum_of_squares"]

DEFAULT_COILS = 8
SUPPORT_LEVEL = 0.05  # object support for the map correlation: reference magnitude above this


@dataclass(frozen=True)
class MultiCoilSpec(TaskSpec):
    """A benchmark degradation of the multi-coil task: a :class:`TaskSpec` with its number of ``coils``."""

    coils: int = DEFAULT_COILS


@dataclass(frozen=True)
class MultiCoilInputs(MRIInputs):
    """Simulated acquisitions of image slices: :class:`~medscore.tasks.mri.MRIInputs` with ``coils`` coils and
    complex k-space noise of std ``kspace_noise``. Measured k-space uses only ``smaps`` (coil maps: an array or an
    opened file, (S, C, H, W) or (C, H, W); None: estimated); its mask comes with the k-space."""

    FILES = ("mask", "smaps")
    coils: int = DEFAULT_COILS
    kspace_noise: float = 0.0
    smaps: Any = None


@dataclass
class MultiCoilProblem(Problem):
    """A :class:`Problem` whose ``op`` holds the ESPIRiT maps (N, K, H, W); ``true_smaps`` are the simulated
    ones, kept only to measure the estimate (:meth:`map_correlations`), never given to a method."""

    true_smaps: Tensor | None = None

    def map_correlations(self) -> np.ndarray:
        """Per slice: :func:`~medscore.physics.map_correlation` of the estimated with the true maps over the
        object (reference magnitude > ``SUPPORT_LEVEL``), 1 = equal up to a global phase."""
        est, true = self.op.smaps.cpu().numpy(), self.true_smaps.cpu().numpy()
        return np.array([map_correlation(e, t, r[0] > SUPPORT_LEVEL)
                         for e, t, r in zip(est, true, self.ref.cpu().numpy())])


class Acquisition(NamedTuple):
    """Simulated slices: k-space ``y`` (B, K, H, W) complex64, the zero-filled RSS ``baseline`` (B, 1, H, W),
    the ESPIRiT maps ``smaps`` and the simulated ``true_smaps`` (both (B, K, H, W) complex64)."""

    y: Tensor
    baseline: Tensor
    smaps: Tensor
    true_smaps: Tensor


def root_sum_of_squares(kspace: Tensor) -> Tensor:
    """Zero-filled root-sum-of-squares image (B, 1, H, W) of centred multi-coil k-space (B, K, H, W)."""
    return torch.linalg.vector_norm(ifft2c(kspace), dim=1, keepdim=True)


def _magnitude(res: SolverResult) -> SolverResult:
    """The complex (B, 2, H, W) result as magnitudes (B, 1, H, W); the std becomes that of the complex value."""
    res.mean = torch.linalg.vector_norm(res.mean, dim=1, keepdim=True)
    if res.std is not None:
        res.std = torch.linalg.vector_norm(res.std, dim=1, keepdim=True)
    return res


@register_task
class MultiCoilTask(MRITask):
    """Multi-coil MRI: simulated acquisitions of magnitude slices, ESPIRiT maps from the undersampled data."""

    name = MULTICOIL_KEY
    label = "multi-coil accelerated MRI"
    baseline_method = "zero-filled RSS"
    baseline_title = "zero-filled RSS"
    baseline_output = "zerofilled"
    report_fastmri = True
    complex_data = True
    inputs_type = MultiCoilInputs

    def preset_key(self, mask: Any = None, smaps: Any = None) -> str:
        """Always ``mri-multicoil``: its problems carry coil maps whatever the mask (the solve passes them; the
        tuner asks with the mask alone)."""
        return MULTICOIL_KEY

    def coil_maps(self, kspace: np.ndarray, mask: np.ndarray) -> Tensor:
        """The maps (B, K, H, W) every method gets for undersampled k-space (B, K, H, W): ESPIRiT from the
        autocalibration region and the image's smooth phase
        (:func:`medscore.tasks.coil_phase.estimate_reconstruction_maps`,
        as the file pipeline does)."""
        return estimate_reconstruction_maps(kspace, mask)

    def calibrated_mask(self, pattern: str, shape: tuple[int, int], accel: float, center: float,
                        seed: int) -> np.ndarray:
        """``make_mask`` with the centre widened, one line at a time, until ESPIRiT gets its ``MIN_CALIB`` block.

        Only small images need it (the benchmark's 151 x 187 slices do not): when the widened centre alone
        would sample more than ``1 / accel``, the acceleration drops to ``0.8 / centre area``."""
        h, w = shape
        one_d = pattern in ("random", "equispaced")
        side = w if one_d else min(h, w)
        frac = max(center, MIN_CALIB / side)
        for _ in range(4):
            mask = make_mask(pattern, (h, w), min(accel, 0.8 / (frac if one_d else frac**2)), frac, seed)
            if calibration_width(expand_mask(mask, shape), min_width=0) >= MIN_CALIB:
                return mask
            frac += 1.0 / side
        calibration_width(expand_mask(mask, shape))  # raises the InputError that names the problem
        return mask

    def acquire(self, ref: np.ndarray, mask: np.ndarray, coils: int, noise_std: float,
                seeds: Sequence[Sequence[int]]) -> Acquisition:
        """Simulate ``ref`` (B, H, W) slices with ``coils`` coils (slice b from ``seeds[b]``), undersample by
        ``mask`` and estimate each slice's maps from its undersampled k-space."""
        ys, true = [], []
        for img, seed in zip(ref, seeds):
            acq = simulate_multicoil(img, num_coils=coils, noise_std=noise_std, mask=mask,
                                     seed=np.random.default_rng(list(seed)))
            ys.append(acq.kspace)
            true.append(acq.smaps)
        y = np.stack(ys)
        return Acquisition(torch.from_numpy(y), root_sum_of_squares(torch.from_numpy(y)).float(),
                           self.coil_maps(y, mask), torch.from_numpy(np.stack(true)))

    def degrade(self, spec: TaskSpec, ref: Tensor, seed: int = 0) -> MultiCoilProblem:
        """Seeded ``spec.pattern`` mask at ``spec.accel`` (centre widened for ESPIRiT if needed), ``spec.coils``
        coils (8 for a plain :class:`TaskSpec`), complex noise of std ``spec.kspace_noise``; slice i is
        simulated from the seed ``(seed, i)``. Baseline: the zero-filled root-sum-of-squares image."""
        n, _, h, w = ref.shape
        coils = spec.coils if isinstance(spec, MultiCoilSpec) else DEFAULT_COILS
        mask = self.calibrated_mask(spec.pattern, (h, w), spec.accel, spec.center, seed)
        acq = self.acquire(ref[:, 0].cpu().numpy(), mask, coils, spec.kspace_noise, [(seed, i) for i in range(n)])
        m = torch.from_numpy(mask)
        return MultiCoilProblem(spec, ref, acq.y, acq.baseline, MultiCoilMRI(m, acq.smaps), m,
                                noise_std=spec.kspace_noise, true_smaps=acq.true_smaps)

    def solve_problem(self, model: ScoreModel, prob: Problem, opts: SamplerOptions, rows: slice = slice(None), *,
                      method: str | None = None, callback: LevelCallback | None = None) -> SolverResult:
        """The complex image of the slices ``rows`` with the problem's estimated maps; its magnitude."""
        res = self.solve(model, prob.y[rows], prob.mask, opts, real_image=False, noise_std=prob.noise_std,
                         smaps=prob.op.smaps[rows], callback=callback)
        return _magnitude(res)

    def classical_methods(self, spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
        """Zero-filled RSS, SENSE-CG, L1-wavelet CS (db4) and TV CS with the estimated maps, their weights tuned
        on ``val``. No nearest-training-slice check: real training slices cannot fit phased multi-coil data."""
        from ..baselines.sense import magnitude, sense_cg, tune_sense, tv_sense, wavelet_sense

        problems = [(val.y[i:i + 1], MultiCoilMRI(val.mask, val.op.smaps[i:i + 1])) for i in range(len(val.ref))]
        refs = list(val.ref[:, 0].cpu().numpy())
        methods: dict[str, Method] = {self.baseline_method: lambda p: (p.baseline, 0)}
        for key, fn, label in (("sense", sense_cg, "SENSE-CG (lam {:g})"),
                               ("l1-wavelet", wavelet_sense, "L1-wavelet CS (db4, lam {:g})"),
                               ("tv", tv_sense, "TV-CS (lam {:g})")):
            lam = float(tune_sense(key, problems, refs)["lam"])
            methods[label.format(lam)] = lambda p, fn=fn, lam=lam: (
                torch.from_numpy(magnitude(fn(p.y, p.op, lam=lam)))[:, None], 0)
        return methods

    def check_inputs(self, inputs: MultiCoilInputs) -> None:
        """Measured k-space needs nothing; a simulation needs a mask or a pattern (checked when it is prepared)."""

    def prepare_stack(self, stack: Stack, device: torch.device, opts: SamplerOptions,
                      inputs: MultiCoilInputs) -> StackSolve:
        """Measured k-space (:class:`KSpaceStack`): :func:`~medscore.tasks.measured.prepare_measured`. Image slices:
        simulated ``coils``-coil acquisitions of every slice (slice i from the seed ``(mask_seed, i)``), under the
        inputs' mask (None draws ``mask_pattern`` as in :meth:`degrade`), ESPIRiT maps per batch. Estimate and
        baseline (zero-filled RSS) are magnitudes; the std is that of the complex value."""
        if isinstance(stack, KSpaceStack):
            return prepare_measured(self, stack, device, opts, inputs.smaps)
        return self._prepare_simulated(stack, device, opts, inputs)

    def _prepare_simulated(self, stack: ImageStack, device: torch.device, opts: SamplerOptions,
                           inputs: MultiCoilInputs) -> StackSolve:
        MRITask.check_inputs(self, inputs)
        ref, shape = stack.ref, stack.shape
        m = (expand_mask(inputs.mask, shape) if inputs.mask is not None
             else self.calibrated_mask(inputs.mask_pattern, shape, inputs.accel, inputs.center, inputs.mask_seed))
        rss = np.empty_like(ref)

        def solve_rows(model: ScoreModel, rows: slice, opts_rows: SamplerOptions,
                       callback: LevelCallback | None) -> SolverResult:
            seeds = [(inputs.mask_seed, i) for i in range(*rows.indices(len(ref)))]
            acq = self.acquire(ref[rows], m, inputs.coils, inputs.kspace_noise, seeds)
            rss[rows] = acq.baseline[:, 0].numpy()
            res = self.solve(model, acq.y.to(device), torch.from_numpy(m).to(device), opts_rows, real_image=False,
                             noise_std=inputs.kspace_noise, smaps=acq.smaps.to(device), callback=callback)
            return _magnitude(res)

        return StackSolve(solve_rows, rss, self.chains(opts))
