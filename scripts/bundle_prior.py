"""Copy a trained model into the package as the bundled prior, with its SHA-256 and card summary.

    python scripts/bundle_prior.py runs/prior --card-json docs/model-card.json

Writes ``medscore/pretrained/model.safetensors`` and ``medscore/pretrained/model.json`` (the training
JSON plus ``sha256`` of the weights and a short ``card`` summary shown by ``medscore models``).
The weights must stay under 25 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from medscore.checkpoint import load_model, resolve_model_path, sha256

DEST = Path(__file__).resolve().parents[1] / "medscore" / "pretrained"
LIMIT = 25e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="training output folder or its model.safetensors")
    ap.add_argument("--card-json", help="JSON file with the card summary (key -> text)")
    args = ap.parse_args()
    weights, meta_path = resolve_model_path(args.model)
    if weights.stat().st_size > LIMIT:
        raise SystemExit(f"{weights} is {weights.stat().st_size / 1e6:.1f} MB: over the 25 MB limit")
    load_model(args.model)  # refuse to bundle something that does not load
    DEST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, DEST / "model.safetensors")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = sha256(DEST / "model.safetensors")
    meta["card"] = json.loads(Path(args.card_json).read_text()) if args.card_json else {}
    (DEST / "model.json").write_text(json.dumps(meta, indent=2))
    print(f"bundled {weights} -> {DEST} (sha256 {meta['sha256']})")


if __name__ == "__main__":
    main()
