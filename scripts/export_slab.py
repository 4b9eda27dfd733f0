"""Write the embedded held-out slab as a NIfTI scan, to try the CLI on data the prior never saw.

    python scripts/export_slab.py test heldout_t1.nii.gz
    medscore mask --pattern random --accel 4 --center 0.08 --shape 151 187 -o mask4x.npy
    medscore reconstruct heldout_t1.nii.gz --mask mask4x.npy -o recon.nii.gz
"""

from __future__ import annotations

import sys

from medscore.io.embedded import save_slab

if __name__ == "__main__":
    which, out = (sys.argv[1], sys.argv[2]) if len(sys.argv) == 3 else ("test", "heldout_t1.nii.gz")
    print(save_slab(which, out))
