"""Derive medscore's embedded brain MRI data from the MNI ICBM152 2009 template shipped by nilearn.

Dev-time only (nilearn is not a runtime dependency). Writes three uint8 NIfTI volumes into
``medscore/data/``: T1, grey-matter and white-matter probability maps, cropped to the head's bounding
box with a small margin, at the template's native 1 mm isotropic resolution, with the affine kept.

    pip install nilearn && python scripts/make_embedded_data.py
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "medscore" / "data"
MARGIN = 3


def _to_uint8(vol: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(vol / vol.max() * 255.0), 0, 255).astype(np.uint8)


def main() -> None:
    from nilearn import datasets  # dev-time dependency only

    nib.openers.Opener.default_compresslevel = 9

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    data = t1.get_fdata()
    nz = np.argwhere(data > 0)
    lo = np.maximum(nz.min(0) - MARGIN, 0)
    hi = np.minimum(nz.max(0) + MARGIN + 1, data.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = t1.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]  # keep world coordinates of the cropped grid
    OUT.mkdir(parents=True, exist_ok=True)
    for name, img in (("t1", t1), ("gm", gm), ("wm", wm)):
        vol = _to_uint8(img.get_fdata()[crop])
        if name != "t1":  # tissue probabilities need no 8-bit precision: 7 bits keeps the folder under 5 MB
            vol = (vol // 2) * 2
        out = nib.Nifti1Image(vol, affine)
        out.header.set_xyzt_units("mm")
        out.header["descrip"] = b"MNI ICBM152 2009 sym (nilearn), uint8, cropped"
        nib.save(out, OUT / f"mni152_{name}.nii.gz")
        print(f"{name}: shape {vol.shape}, {(OUT / f'mni152_{name}.nii.gz').stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
