"""The Python API radiology research scripts import: solvers on arrays, with the bundled prior by default.

    >>> import numpy as np, medscore.api as ms
    >>> img = np.random.rand(64, 64).astype(np.float32)          # an image on the [0, 1] scale
    >>> mask = ms.make_mask("random", (64, 64), accel=4, center=0.08)
    >>> res = ms.reconstruct_mri(img, mask, model=None, preset="fast")   # doctest: +SKIP
    >>> res.mean.shape                                              # doctest: +SKIP
    (64, 64)

Arrays may be (H, W) or (B, H, W) numpy arrays or tensors on the [0, 1] intensity scale (use
:class:`medscore.transforms.RobustScaleIntensity` for raw scans). Results come back as numpy arrays
of the input's shape: ``mean`` and, with ``samples > 1``, the per-pixel ``std``. For files, see
:mod:`medscore.pipeline` (``reconstruct_file`` etc.).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import solvers
from .priors.checkpoint import LoadedModel
from .tasks.coil_phase import single_coil_phase_map
from .devices import resolve_device
from .priors.store import load_prior
from .physics import make_mask, validate_mask
from .pipeline import denoise_file, inpaint_file, reconstruct_file, reconstruct_kspace_file, reconstruct_path
from .pipeline.driver import check_slice_memory
from .pipeline.memory import model_width
from .pipeline.many import solve_many
from .solvers import SamplerOptions
from .solvers.adapt import Adaptation, AdaptedPrior
from .tasks import get_task, volume_options

__all__ = [
    "Estimate", "load_prior", "make_mask", "reconstruct_mri", "inpaint", "denoise", "sample", "sample_to_files",
    "reconstruct_file", "reconstruct_kspace_file", "reconstruct_path", "inpaint_file", "denoise_file", "train",  # noqa: F822
    "SamplerOptions", "Adaptation", "solve_many",
]


AdaptArg = bool | Adaptation


def __getattr__(name: str):
    """``train`` is imported on first use, so the array API does not load the distributed trainer."""
    if name == "train":
        from .training.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Estimate:
    """Posterior mean and per-pixel std (None for one sample) as numpy arrays, NFE per sample, seconds, and the
    network evaluations per image of the whole solve (every sample, and a two-pass preset's first pass)."""

    mean: np.ndarray
    std: np.ndarray | None
    nfe: int
    seconds: float
    total_nfe: int = 0
    adaptation: dict | None = None  # with adapt=: its settings and the forward / backward passes it took


def _batch(x, device: torch.device) -> tuple[torch.Tensor, bool]:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    single = t.ndim == 2
    if t.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or a stack (B, H, W), got shape {tuple(t.shape)}")
    t = t[None] if single else t
    return t[:, None].to(device), single


def _network(prior: LoadedModel, adapt: AdaptArg) -> torch.nn.Module:
    """The prior's score network, or (``adapt``) a copy adapted during the solve."""
    settings = Adaptation.of(adapt, prior.model)
    return prior.model if settings is None else AdaptedPrior(prior.model, settings)


def _estimate(res: solvers.SolverResult, single: bool, channel_norm: bool = False, net: object = None) -> Estimate:
    def arr(t: torch.Tensor | None) -> np.ndarray | None:
        if t is None:
            return None
        t = torch.linalg.vector_norm(t, dim=1) if channel_norm else t[:, 0]
        a = t.float().cpu().numpy()
        return a[0] if single else a

    adapted = net.report() if isinstance(net, AdaptedPrior) else None
    return Estimate(arr(res.mean), arr(res.std), res.nfe, res.seconds, res.total_nfe, adapted)  # type: ignore[arg-type]


def _setup(model, device: str, preset: str, samples: int, seed: int, complex_data: bool = False,
           **overrides) -> tuple[LoadedModel, torch.device, SamplerOptions]:
    from .priors.store import check_model_arg
    from .solvers import check_solver_options

    check_model_arg("model", model)
    opts = check_solver_options(preset, samples, seed, overrides)
    dev = resolve_device(device)
    prior = load_prior(model, dev, complex_data=complex_data)
    return prior, dev, opts


def _check_fits(prior: LoadedModel, dev: torch.device, opts: SamplerOptions, task: str, images: object,
                channels: int = 1, method: str | None = None) -> None:
    """The images (H, W) or (B, H, W), solved in one batch with their chains, fit in free memory (one InputError)."""
    shape = tuple(int(n) for n in np.shape(images))
    batch, (h, w) = (shape[0] if len(shape) == 3 else 1), shape[-2:]
    chains = get_task(task).chains(opts, method)
    check_slice_memory((h, w), model_width(prior.meta), batch * chains, channels, dev,
                       f"{batch} image(s) of {h} x {w} pixels with {chains} chain(s) each",
                       "lower samples, or pass fewer images at a time")


def _check_sample_size(n: int, size: int | tuple[int, int], dev: torch.device | None = None,
                       ngf: int | None = None) -> tuple[int, int]:
    """``n`` >= 1 and sides >= 8, and ``n`` images of that size fit in free memory: their four float32 copies
    (start, iterate, noise, score) before any model is loaded (``ngf`` None), the network's estimate after."""
    from .checks import check_int, check_memory
    from .errors import InputError

    check_int("n", n, 1)
    sides = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(sides) != 2:
        raise InputError(f"size must be an integer or (H, W), got {size!r}")
    h, w = check_int("size", sides[0], 8), check_int("size", sides[1], 8)
    what, hint = f"sampling {n} images of {h} x {w} pixels", "lower n (-n) or size (--size)"
    if ngf is None:
        check_memory(what, 4 * n * h * w * 4, hint)
    else:
        check_slice_memory((h, w), ngf, n, 1, dev, what, hint)
    return h, w


def reconstruct_mri(image_or_kspace, mask, *, model=None, preset: str = "default", samples: int | None = None,
                    seed: int = 0, device: str = "cpu", noise_std: float = 0.0, adapt: AdaptArg = False,
                    volume: bool = False, **overrides) -> Estimate:
    """Accelerated MRI. A real array is treated as the fully sampled image: its k-space is undersampled
    with ``mask`` (retrospective). A complex array is measured single-coil centred k-space on the [0, 1] image
    scale; the estimate is then the magnitude of the complex reconstruction, solved with the image's smooth phase
    moved into a one-coil map (:func:`medscore.tasks.coil_phase.single_coil_phase_map`), as ``medscore reconstruct``
    does with k-space files. ``adapt`` (True or an :class:`~medscore.solvers.adapt.Adaptation`): test-time
    adaptation of the prior to these measurements. ``volume``: a stack (B, H, W) is one volume's neighbouring slices,
    solved together and coupled along B (``z_tv=`` sets the weight; :mod:`medscore.solvers.slice_coupling`)."""
    from .checks import check_image_array, check_positive

    check_image_array("image_or_kspace", image_or_kspace, allow_complex=True)
    validate_mask(mask, tuple(np.shape(image_or_kspace)[-2:]))
    check_positive("noise_std", noise_std, allow_zero=True)
    data = image_or_kspace
    is_kspace = np.iscomplexobj(np.asarray(data)) if not isinstance(data, torch.Tensor) else data.is_complex()
    prior, dev, opts = _setup(model, device, preset, samples, seed, complex_data=is_kspace, **overrides)
    opts = volume_options(get_task("mri"), opts, volume)
    _check_fits(prior, dev, opts, "mri", data, channels=2 if is_kspace else 1)
    shape = tuple(np.shape(data)[-2:])
    m = torch.from_numpy(np.ascontiguousarray(validate_mask(np.asarray(mask), shape), dtype=np.float32)).to(dev)
    mri, net = get_task("mri"), _network(prior, adapt)
    if is_kspace:
        k = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data).to(dev, torch.complex64)
        single = k.ndim == 2
        k = (k[None] if single else k)[:, None]
        k = k * m
        res = mri.solve(net, k, m, opts, real_image=False, noise_std=noise_std, smaps=single_coil_phase_map(k, m))
        return _estimate(res, single, channel_norm=True, net=net)  # the magnitude: the phase map leaves it
    x, single = _batch(data, dev)
    y = mri.operator(m, real_image=True).A(x.float())
    return _estimate(mri.solve(net, y, m, opts, real_image=True, noise_std=noise_std), single, net=net)


def inpaint(image, mask, *, model=None, preset: str = "default", samples: int | None = None, seed: int = 0,
            device: str = "cpu", adapt: AdaptArg = False, volume: bool = False, **overrides) -> Estimate:
    """Fill the pixels where ``mask`` (H, W) is 0; pixels where it is 1 are known. ``adapt`` and ``volume``: as
    :func:`reconstruct_mri`'s."""
    from .checks import check_image_array

    check_image_array("image", image)
    validate_mask(mask, tuple(np.shape(image)[-2:]))
    prior, dev, opts = _setup(model, device, preset, samples, seed, **overrides)
    opts = volume_options(get_task("inpaint"), opts, volume)
    _check_fits(prior, dev, opts, "inpaint", image)
    x, single = _batch(image, dev)
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32)).to(dev)
    net = _network(prior, adapt)
    return _estimate(get_task("inpaint").solve(net, x.float() * m, m, opts), single, net=net)


def denoise(image, noise_std: float | None = None, *, model=None, method: str = "tweedie", preset: str = "default",
            samples: int | None = None, seed: int = 0, device: str = "cpu", adapt: AdaptArg = False,
            volume: bool = False, **overrides) -> Estimate:
    """Denoise; ``noise_std`` on the [0, 1] scale, estimated with scikit-image when None. ``adapt``: the prior
    adapted to these images by SURE first (no operator to fit). ``volume``: the images are the slices of one
    volume, their estimates coupled by TV along the slice axis (``z_tv=`` overrides the tuned weight)."""
    from .physics import estimate_noise_std
    from .checks import check_choice, check_image_array, check_positive

    check_image_array("image", image)
    if noise_std is not None:
        check_positive("noise_std", noise_std)
    task = get_task("denoise")
    check_choice("method", method, task.methods)
    prior, dev, opts = _setup(model, device, preset, samples, seed, **overrides)
    opts = volume_options(task, opts, volume)
    _check_fits(prior, dev, opts, "denoise", image, method=method)
    x, single = _batch(image, dev)
    sigma = float(noise_std) if noise_std is not None else estimate_noise_std(x.cpu())
    net = _network(prior, adapt)
    return _estimate(task.solve(net, x.float(), sigma, opts, method=method), single, net=net)


def sample(n: int = 16, size: int | tuple[int, int] = 64, *, model=None, preset: str = "default", seed: int = 0,
           device: str = "cpu", **overrides) -> Estimate:
    """``n`` unconditional samples (n, H, W) from the prior, drawn as one batch (checked against free memory)."""
    shape = _check_sample_size(n, size)
    prior, dev, opts = _setup(model, device, preset, 1, seed, **overrides)
    _check_sample_size(n, shape, dev, model_width(prior.meta))
    return _estimate(solvers.sample(prior.model, n, shape, opts, device=dev), single=False)


def sample_to_files(n: int, out: str | Path, *, size: int = 64, model=None, opts: SamplerOptions | None = None,
                    device: str = "auto",
                    progress: Callable[[int, int], None] | None = None) -> tuple[tuple[Path, Path], int]:
    """Draw samples and write a PNG grid plus a .npy stack beside it; returns ``((png, npy), nfe)``."""
    from .errors import InputError
    from .io.atomic import atomic_path
    from .io.pictures import save_grid

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must be a .png file, got {out.name}")
    shape = _check_sample_size(n, size)
    from .io.atomic import ensure_writable

    ensure_writable(out, "out")
    dev = resolve_device(device)
    prior = load_prior(model, dev)
    _check_sample_size(n, shape, dev, model_width(prior.meta))
    cb = None if progress is None else (lambda i, total: progress(i + 1, total))
    res = solvers.sample(prior.model, n, shape, opts or SamplerOptions(), device=dev, callback=cb)
    imgs = res.mean[:, 0].float().cpu().numpy()
    png = save_grid(imgs, out)
    npy = out.with_suffix(".npy")
    with atomic_path(npy) as tmp:
        np.save(tmp, imgs)
    return (png, npy), res.nfe
