"""``medscore train``: denoising score matching on scans (or the embedded brain MRI)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ._common import console, handle_errors, progress_bar

if TYPE_CHECKING:
    from ..config import TrainConfig


def train_command(
    modality: Annotated[str, typer.Option(help="imaging modality the prior is for (mri)")] = "mri",
    data: Annotated[Optional[Path], typer.Option(
        help="NIfTI file/folder, DICOM folder, .npy or .txt list; default: embedded brain MRI")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML training config (see configs/)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="training steps")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="images per step")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="training image/patch size in pixels")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    out: Annotated[Path,
                   typer.Option(help="output folder for weights, config, logs and sample PNGs")] = Path("runs/mri"),
    resume: Annotated[bool, typer.Option(help="continue the run in --out exactly where it stopped")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="replace the run in a non-empty --out (its weights, state and log)")] = False,
) -> None:
    """Train an NCSN score network by denoising score matching over geometric noise levels.

    A non-empty --out is refused unless --resume or --overwrite is given."""
    with handle_errors():
        from ..config import TrainConfig, load_config, replace
        from ..errors import InputError
        from ..io.atomic import check_out_dir
        from ..training.loop import train

        if modality != "mri":
            raise InputError(f"modality {modality!r} is not supported yet: use --modality mri")
        _check_options(steps, batch_size, image_size, seed)
        check_out_dir(out, resume=resume, overwrite=overwrite)
        if config is not None:
            cfg = load_config(config)
        elif resume and (out / "model.json").is_file():
            cfg = _run_config(out / "model.json")  # --resume alone continues with the run's own settings
        else:
            cfg = TrainConfig()
        if data is not None and not data.exists():
            raise InputError(f"--data path not found: {data}")
        cfg = replace(cfg, modality=modality, steps=steps, batch_size=batch_size, device=device, seed=seed)
        cfg = replace(cfg, data=replace(cfg.data, path=str(data) if data is not None else None, image_size=image_size))
        _check_before_start(cfg, out, resume)
        with progress_bar("loss", "rate") as bar:
            task = bar.add_task("training", total=cfg.steps, loss="", rate="")

            def on_progress(p) -> None:
                val = "" if p.val_loss is None else f" val {p.val_loss:.1f}"
                bar.update(task, completed=p.step, loss=f"loss {p.loss:.1f}{val}", rate=f"{p.images_per_s:.1f} img/s")

            weights = train(cfg, out, resume=resume, overwrite=overwrite, callback=on_progress)
        console.print(f"weights: {weights}")
        console.print(f"config:  {weights.parent / 'model.json'}")


def _check_before_start(cfg: TrainConfig, out: Path, resume: bool) -> None:
    """What would otherwise fail once the run (and its progress bar) has started: the state to resume from, the
    weights to start from (loaded and verified as the loop will: ``init_from``) and every scan."""
    from ..errors import InputError
    from ..training.init_from import check_init_from

    if resume and cfg.steps is not None and not (out / "resume.pt").exists():
        raise InputError(f"--resume: no resume.pt in {out}")
    if not resume:
        check_init_from(cfg)
    if cfg.data.path is not None:
        from ..training.dataset import load_volumes

        load_volumes(cfg.data)  # read every scan before anything is written: a bad file fails here


def _check_options(steps: int | None, batch_size: int | None, image_size: int | None, seed: int | None) -> None:
    """Numeric options, named as the user typed them (None = not given)."""
    from ..checks import MIN_SLICE, check_int

    for name, value, low in (("--steps", steps, 1), ("--batch-size", batch_size, 1),
                             ("--image-size", image_size, MIN_SLICE), ("--seed", seed, 0)):
        if value is not None:
            check_int(name, value, low)


def _run_config(meta_path: Path):
    """The full training config saved in a run's ``model.json`` (read with medscore's one model.json reader)."""
    from ..config import TrainConfig, config_from_dict
    from ..errors import CheckpointError
    from ..priors.checks import read_description

    meta = read_description(meta_path)  # size and nesting caps, valid JSON: its own one line
    try:
        return config_from_dict(TrainConfig, meta["train_config"], where=str(meta_path))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"--resume: cannot read the run's config from {meta_path} ({exc.__class__.__name__}); "
                              "pass --config") from None
