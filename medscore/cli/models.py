"""``medscore models``: the bundled prior and its model card summary."""

from __future__ import annotations

from ._common import console, handle_errors


def models_command() -> None:
    """List the bundled model(s): name, size, training data and recipe, measured figures."""
    with handle_errors():
        from rich.table import Table

        from ..models import BUNDLED_NAME, bundled_dir, bundled_info

        info = bundled_info()
        weights = bundled_dir() / "model.safetensors"
        card = info.get("card", {})
        table = Table(title="bundled models (used when --model is not given)", show_lines=True)
        table.add_column("field")
        table.add_column("value")
        rows = {
            "name": BUNDLED_NAME,
            "weights": f"{weights} ({weights.stat().st_size / 1e6:.1f} MB, sha256 {info['sha256'][:16]}...)",
            "network": f"{info['model']['arch']} ngf={info['model']['ngf']} ({info.get('parameters', '?')} parameters), "
                       f"{len(info['sigmas'])} levels {info['sigmas'][0]:.3g}..{info['sigmas'][-1]:.3g}",
            "training": f"{info['step']} steps on {info['image_size']} px {info.get('spatial', '')} patches, "
                        f"modality {info['modality']}",
            **{k: str(v) for k, v in card.items()},
            **{f"preset {name}": p.get("note", "") for name, p in info.get("presets", {}).items()},
        }
        for k, v in rows.items():
            table.add_row(k, v)
        console.print(table)
