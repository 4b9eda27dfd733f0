"""``medscore models``: the bundled priors and their model card summaries."""

from __future__ import annotations

from typing import Any

from ._common import console, handle_errors


def _rows(label: str, name: str | None) -> dict[str, str]:
    """The table rows of one bundled prior (``name`` None: the default one)."""
    from ..models import BUNDLED_NAME, bundled_dir, bundled_info

    info: dict[str, Any] = bundled_info(name)
    weights = bundled_dir(name) / "model.safetensors"
    card = info.get("card", {})
    return {
        "name": f"{label} ({info.get('name', BUNDLED_NAME if name is None else name)})",
        "weights": f"{weights} ({weights.stat().st_size / 1e6:.1f} MB, sha256 {info['sha256'][:16]}...)",
        "network": f"{info['model']['arch']} ngf={info['model']['ngf']}, {info['model'].get('in_channels', 1)} image "
                   f"channel(s) ({info.get('parameters', '?')} parameters), {len(info['sigmas'])} levels "
                   f"{info['sigmas'][0]:.3g}..{info['sigmas'][-1]:.3g}",
        "training": f"{info['step']} steps on {info['image_size']} px {info.get('spatial', '')} patches, "
                    f"modality {info['modality']}",
        **{k: str(v) for k, v in card.items()},
        **{f"preset {pname}": p.get("note", "") for pname, p in info.get("presets", {}).items()},
    }


def models_command() -> None:
    """List the bundled models: name, size, training data and recipe, measured figures."""
    with handle_errors():
        from rich.table import Table

        from ..models import bundled_names

        table = Table(title="bundled models (the default is used when --model is not given; complex k-space "
                            "uses bundled:complex when it is there)", show_lines=True)
        table.add_column("field")
        table.add_column("value")
        for label, name in [("default", None)] + [(f"bundled:{n}", n) for n in bundled_names()]:
            for k, v in _rows(label, name).items():
                table.add_row(k, v)
        console.print(table)
