"""Cartesian MRI forward models with the centred orthonormal 2D FFT (MONAI ``fft_utils_t``).

Single coil: ``y = M F x``; multi coil: ``y_k = M F (S_k x)``. k-space is complex64 (B, K, H, W),
centred (DC at index (H // 2, W // 2)); masks are (H, W) or (W,) (phase-encode lines along W).
"""

from __future__ import annotations

import copy

import torch
from monai.networks.blocks.fft_utils_t import fftn_centered_t, ifftn_centered_t
from torch import Tensor

from .base import LinearOperator, MaskedUnitary, as_mask_tensor
from .masks import validate_mask

__all__ = [
    "fft2c",
    "ifft2c",
    "channels_to_complex",
    "complex_to_channels",
    "normalize_smaps",
    "SingleCoilMRI",
    "MultiCoilMRI",
]


def fft2c(z: Tensor) -> Tensor:
    """Centred orthonormal 2D FFT over the last two dims of a complex tensor."""
    return torch.view_as_complex(fftn_centered_t(torch.view_as_real(z), spatial_dims=2, is_complex=True))


def ifft2c(k: Tensor) -> Tensor:
    """Centred orthonormal 2D inverse FFT over the last two dims of a complex tensor."""
    return torch.view_as_complex(ifftn_centered_t(torch.view_as_real(k), spatial_dims=2, is_complex=True))


def channels_to_complex(x: Tensor) -> Tensor:
    """(B, 2, H, W) real/imag channels -> (B, 1, H, W) complex."""
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"expected a complex image as (B, 2, H, W) real/imag channels, got {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1]).unsqueeze(1)


def complex_to_channels(z: Tensor) -> Tensor:
    """(B, 1, H, W) complex -> (B, 2, H, W) real/imag channels."""
    return torch.cat([z.real, z.imag], dim=1)


def normalize_smaps(smaps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale coil maps so that ``sum_k |S_k|^2 = 1`` wherever they are non-zero (zero elsewhere)."""
    rss = (smaps.abs() ** 2).sum(dim=-3, keepdim=True).sqrt()
    return torch.where(rss > eps, smaps / rss.clamp_min(eps), torch.zeros_like(smaps))


class SingleCoilMRI(MaskedUnitary):
    """``y = M F x``, y complex64 (B, 1, H, W).

    ``real_input=True``: x is a real (B, 1, H, W) image and A is real-linear; ``A_adjoint`` returns
    ``Re(F^H M y)``, the true adjoint for the real inner product. ``project``/``A_dagger`` are then the
    real part of the complex ones: exact when the mask is conjugate-symmetric (``m[i, j] ==
    m[-i % H, -j % W]`` in unshifted indices, i.e. symmetric about the DC sample) and an
    approximation otherwise. ``real_input=False``: x is (B, 2, H, W) (real, imag) and all are exact.
    """

    def __init__(self, mask: object, real_input: bool = True) -> None:
        super().__init__(mask)
        self.real_input = real_input

    def T(self, x: Tensor) -> Tensor:
        if self.real_input:
            if x.ndim != 4 or x.shape[1] != 1:
                raise ValueError(f"real_input=True expects (B, 1, H, W) images, got {tuple(x.shape)}")
            return torch.view_as_complex(fftn_centered_t(x, spatial_dims=2, is_complex=False))
        return fft2c(channels_to_complex(x))

    def T_adjoint(self, k: Tensor) -> Tensor:
        z = ifft2c(k)
        return z.real.contiguous() if self.real_input else complex_to_channels(z)

    def zero_filled(self, y: Tensor) -> Tensor:
        """Zero-filled reconstruction ``A^+ y`` (inverse FFT of the masked k-space)."""
        return self.A_dagger(y)

    def zero_filled_magnitude(self, y: Tensor) -> Tensor:
        """``|F^H M y|`` as (B, 1, H, W): the usual zero-filled baseline, whatever the image mode."""
        return ifft2c(self.mask_for(y) * y).abs()


class MultiCoilMRI(LinearOperator):
    """``y_k = M F (S_k x)``; x complex (B, 2, H, W), smaps complex (1 or B, K, H, W), y (B, K, H, W).

    ``A_dagger`` (and hence ``project``) uses ``cg_iters`` CG iterations on the normal equations,
    ``cg_tol`` relative residual. If ``sum_k |S_k|^2 = 1`` (``normalize=True`` enforces it) then
    ``A^H A = I`` where k-space is fully sampled, so ``A^H y`` is already the least-squares solution there.
    """

    def __init__(
        self, mask: object, smaps: Tensor, normalize: bool = False, cg_iters: int = 10, cg_tol: float = 1e-6
    ) -> None:
        super().__init__(cg_iters=cg_iters, cg_tol=cg_tol)
        smaps = torch.as_tensor(smaps)
        if not smaps.is_complex() or smaps.ndim != 4:
            raise ValueError(f"smaps must be complex (1 or B, K, H, W), got {smaps.dtype} {tuple(smaps.shape)}")
        self.smaps = normalize_smaps(smaps) if normalize else smaps
        self.mask = as_mask_tensor(validate_mask(mask, tuple(smaps.shape[-2:])))

    def _on(self, t: Tensor) -> tuple[Tensor, Tensor]:
        if self.smaps.device != t.device:
            self.smaps = self.smaps.to(t.device)
            self.mask = self.mask.to(t.device)
        return self.mask, self.smaps

    def A(self, x: Tensor) -> Tensor:
        m, s = self._on(x)
        return m * fft2c(s * channels_to_complex(x).to(s.dtype))

    def A_adjoint(self, y: Tensor) -> Tensor:
        m, s = self._on(y)
        return complex_to_channels((s.conj() * ifft2c(m * y)).sum(dim=1, keepdim=True))

    def zero_filled(self, y: Tensor) -> Tensor:
        """Coil-combined zero-filled image ``A^H y`` (the least-squares solution for normalised smaps)."""
        return self.A_adjoint(y)

    def repeat_interleave(self, n: int) -> "MultiCoilMRI":
        """Per-image coil maps (B, K, H, W) repeated ``n`` times each; maps shared by the batch are kept."""
        if n == 1 or self.smaps.shape[0] == 1:
            return self
        out = copy.copy(self)
        out.smaps = self.smaps.repeat_interleave(n, dim=0)
        return out
