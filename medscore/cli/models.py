"""``medscore models``: the bundled priors and their model card summaries; ``medscore level-split``: make one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import console, handle_errors


def _rows(label: str, name: str | None) -> dict[str, str]:
    """The table rows of one bundled prior (``name`` None: the default one)."""
    from ..priors.store import BUNDLED_NAME, bundled_dir, bundled_info

    info: dict[str, Any] = bundled_info(name)
    if "switch_sigma" in info:
        return _level_split_rows(label, name, info)
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


def _level_split_rows(label: str, name: str | None, info: dict[str, Any]) -> dict[str, str]:
    """The table rows of a bundled level split: its two members and where they hand over."""
    return {
        "name": f"{label} ({info.get('name', name)})",
        "network": f"{info['coarse']} above sigma {info['switch_sigma']:g}, {info['fine']} at and below "
                   "(no weights of its own)",
        **{k: str(v) for k, v in info.get("card", {}).items()},
        **{f"preset {pname}": p.get("note", "") for pname, p in info.get("presets", {}).items()},
    }


def models_command() -> None:
    """List the bundled models: name, size, training data and recipe, measured figures."""
    with handle_errors():
        from rich.table import Table

        from ..priors.store import bundled_names

        table = Table(title="bundled models (the default is used when --model is not given; complex k-space "
                            "uses bundled:complex when it is there)", show_lines=True)
        table.add_column("field")
        table.add_column("value")
        for label, name in [("default", None)] + [(f"bundled:{n}", n) for n in bundled_names()]:
            for k, v in _rows(label, name).items():
                table.add_row(k, v)
        console.print(table)


def _member(ref: str, out: Path) -> str:
    """A member as the level-split file stores it: bundled names as given, folders relative to ``out``."""
    if ref == "bundled" or ref.startswith("bundled:"):
        return ref
    return os.path.relpath(Path(ref).resolve(), out.resolve())


def level_split_command(
    out: Annotated[Path, typer.Argument(help="new folder for the level-split model.json (no weights are copied)")],
    coarse: Annotated[str, typer.Option(
        help="model for the levels above --switch-sigma: bundled, bundled:NAME or a folder")],
    fine: Annotated[str, typer.Option(help="model for the levels at and below --switch-sigma")] = "bundled",
    switch_sigma: Annotated[float, typer.Option(help="noise std on the [0, 1] scale where --fine takes over")] = 0.1,
    name: Annotated[Optional[str], typer.Option(help="the name shown in sidecars; default: the folder name")] = None,
) -> None:
    """Combine two priors trained on the same noise levels: a cheap one for the high levels, a better one below.

    Use the folder as --model anywhere; `medscore tune FOLDER` stores presets tuned for the pair in it.
    """
    with handle_errors():
        from ..priors.store import save_level_split

        path = save_level_split(out, _member(coarse, out), _member(fine, out), switch_sigma, name=name)
        console.print(f"level split written to {path}: --model {out}")
