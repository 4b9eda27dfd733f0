"""Build the second head of the broader prior's training set: the Colin27 single-subject T1 at 1 mm.

Colin27 (Holmes et al., J Comput Assist Tomogr 1998: 27 averaged T1 scans of one subject) ships in Debian's
``mricron-data`` twice: ``ch2.nii.gz`` (1 mm, the full head: scalp, fat, skull, neck) and ``ch2better.nii.gz``
(0.5 mm, sharper, the brain only). This script copies the first and block-averages the second to 1 mm (the
embedded MNI152's grid, so the pixel-size augmentation starts from 1 mm), and writes a ``.txt`` list of both that
``data.extra`` of a training config names::

    apt-get install mricron-data          # once; never needed at run time
    python scripts/build_head_set.py --out runs/heads
    medscore train --config configs/mri-heads-cpu.yaml --out runs/heads-prior

Colin27 is also in nothing medscore tests on: the external benchmark's scans are other subjects.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from medscore.evaluation.external import block_mean
from medscore.io.atomic import atomic_path

TEMPLATES = Path("/usr/share/mricron/templates")


def to_1mm(source: Path, target: Path) -> Path:
    """``source`` block-averaged to (about) 1 mm voxels, written to ``target``."""
    if not source.exists():
        raise SystemExit(f"{source} not found: install Debian's mricron-data (apt-get install mricron-data)")
    img = nib.load(str(source))
    k = int(round(1.0 / float(img.header.get_zooms()[0])))
    vol = block_mean(np.asarray(img.dataobj, dtype=np.float32), k)
    affine = img.affine.copy()
    affine[:3, :3] *= k
    affine[:3, 3] += img.affine[:3, :3] @ np.full(3, (k - 1) / 2.0)  # the block's centre
    with atomic_path(target) as tmp:
        nib.save(nib.Nifti1Image(vol, affine), str(tmp))
    print(f"wrote {target} {vol.shape} at {k * float(img.header.get_zooms()[0]):.2f} mm")
    return target


def build(out: Path, templates: Path = TEMPLATES) -> Path:
    """Write the Colin27 head and brain at 1 mm and ``heads.txt`` under ``out``; returns the list's path."""
    out.mkdir(parents=True, exist_ok=True)
    written = [to_1mm(templates / "ch2.nii.gz", out / "colin27-head-1mm.nii.gz"),
               to_1mm(templates / "ch2better.nii.gz", out / "colin27-brain-1mm.nii.gz")]
    listing = out / "heads.txt"
    with atomic_path(listing) as tmp:
        Path(tmp).write_text("".join(p.name + "\n" for p in written))
    return listing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/heads"))
    ap.add_argument("--templates", type=Path, default=TEMPLATES)
    args = ap.parse_args()
    print(f"wrote {build(args.out, args.templates)}")


if __name__ == "__main__":
    main()
