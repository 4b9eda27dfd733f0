"""Copy a trained model into the package as the bundled prior, with its SHA-256 and card summary.

    python scripts/bundle_prior.py runs/unet --title mri-brain-unet --card-json card.json           # the default
    python scripts/bundle_prior.py runs/complex-pair --name complex --title mri-brain-ncsn-complex  # bundled:complex

Writes ``model.safetensors`` and ``model.json`` (the training JSON plus ``sha256`` of the weights, the
``name`` shown in sidecars, a short ``card`` summary shown by ``medscore models`` and, unless the run was tuned
(``medscore tune`` wrote its own), the built-in ``fast``/``default``/``best`` presets the docs describe) to
``medscore/pretrained/`` (the default prior) or ``medscore/pretrained/NAME/`` (``--model bundled:NAME``).
The weights must stay under 25 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from medscore.priors.checkpoint import load_model, resolve_model_path, sha256
from medscore.sampling import PRESETS
from medscore.sampling.presets import presets_to_json

DEST = Path(__file__).resolve().parents[1] / "medscore" / "pretrained"
LIMIT = 25e6
STORED_PRESETS = ("fast", "default", "best")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="training output folder or its model.safetensors")
    ap.add_argument("--card-json", help="JSON file with the card summary (key -> text)")
    ap.add_argument("--name", default=None, help="bundle as bundled:NAME (a subfolder) instead of the default")
    ap.add_argument("--title", default=None, help="the model's name in sidecars and `medscore models`")
    args = ap.parse_args()
    dest = DEST / args.name if args.name else DEST
    weights, meta_path = resolve_model_path(args.model)
    if weights.stat().st_size > LIMIT:
        raise SystemExit(f"{weights} is {weights.stat().st_size / 1e6:.1f} MB: over the 25 MB limit")
    load_model(args.model)  # refuse to bundle something that does not load
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, dest / "model.safetensors")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = sha256(dest / "model.safetensors")
    meta["card"] = json.loads(Path(args.card_json).read_text()) if args.card_json else {}
    meta.setdefault("presets", presets_to_json({name: PRESETS[name] for name in STORED_PRESETS}))
    if args.title:
        meta["name"] = args.title
    (dest / "model.json").write_text(json.dumps(meta, indent=2))
    print(f"bundled {weights} -> {dest} (sha256 {meta['sha256']})")


if __name__ == "__main__":
    main()
