"""Export a score prior as a MONAI bundle that ``python -m monai.bundle run`` executes on NIfTI files.

Layout: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.safetensors`` and
``models/model.json`` (so ``--model DIR/models`` works with medscore too) and ``docs/README.md``.
The network is built from the config (``medscore.monai.bundle.build_network`` from the model description)
and its safetensors weights are loaded by ``medscore.monai.bundle.load_weights``; preprocessing is
``medscore.transforms.inference_transforms``, the inferer ``medscore.monai.inferer.ScoreInferer`` and the
postprocessing MONAI's ``Invertd`` + ``SaveImaged``. MONAI's ``SupervisedEvaluator`` needs
pytorch-ignite, which medscore does not depend on, so :func:`run_inference` is the loop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from monai.data import MetaTensor

from .. import __version__
from ..priors.checkpoint import load_model
from ..config import ModelConfig, config_from_dict
from ..errors import InputError
from ..io.atomic import atomic_path
from ..priors.store import load_prior
from ..nets import build_model

__all__ = ["export_bundle", "build_network", "build_level_split", "load_weights", "load_split_weights", "run_inference",
           "inference_config", "metadata"]
_MEMBERS = ("coarse", "fine")


def build_network(model: dict[str, Any], sigmas: Sequence[float]) -> torch.nn.Module:
    """The score network a medscore model description (``model.json``'s ``model`` and ``sigmas``) names."""
    return build_model(config_from_dict(ModelConfig, model), torch.tensor(list(sigmas), dtype=torch.float32))


def load_weights(network: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load safetensors weights into ``network`` (strict) and return it in eval mode, in the memory layout of
    every loaded medscore model (:func:`medscore.nets.accelerate.inference_layout`)."""
    from safetensors.torch import load_file

    from ..nets.accelerate import inference_layout

    network.load_state_dict(load_file(str(path)), strict=True)
    return inference_layout(network.eval())


def build_level_split(coarse: dict[str, Any], fine: dict[str, Any], switch_sigma: float) -> torch.nn.Module:
    """The :class:`~medscore.nets.level_split.LevelSplitScore` of two model descriptions (``model`` and ``sigmas``
    of each member's ``model.json``): the network of a bundle exported from a level-split prior."""
    from ..nets.level_split import LevelSplitScore

    return LevelSplitScore(build_network(coarse["model"], coarse["sigmas"]),
                           build_network(fine["model"], fine["sigmas"]), switch_sigma)


def load_split_weights(network: torch.nn.Module, models_dir: str | Path) -> torch.nn.Module:
    """Load ``models_dir/coarse`` and ``models_dir/fine`` weights into a :func:`build_level_split` network."""
    for member in _MEMBERS:
        load_weights(getattr(network, member), Path(models_dir) / member / "model.safetensors")
    return network.eval()


def run_inference(dataset, network: torch.nn.Module, inferer, postprocessing, device: str | torch.device = "cpu",
                  key: str = "image", pred_key: str = "pred") -> int:
    """Each item of ``dataset``: ``inferer(image, network)`` -> ``d[pred_key]`` -> ``postprocessing(d)``."""
    network = network.to(device).eval()
    for i in range(len(dataset)):
        d = dict(dataset[i])
        img = d[key]
        pred = inferer(img[None].to(device), network)[0].cpu()
        d[pred_key] = MetaTensor(pred, meta=dict(img.meta)) if isinstance(img, MetaTensor) else pred
        postprocessing(d)
    return len(dataset)


def _network_entries(info: dict[str, Any]) -> dict[str, Any]:
    """``network_def`` and ``network`` of ``inference.json``: one network, or a level split's two."""
    if "level_split" not in info:
        return {"network_def": {"_target_": "medscore.monai.bundle.build_network", "model": info["model"],
                                "sigmas": info["sigmas"]},
                "network": "$medscore_bundle.load_weights(@network_def, @bundle_root + '/models/model.safetensors')"
                           ".to(@device)"}
    split = info["level_split"]
    return {"network_def": {"_target_": "medscore.monai.bundle.build_level_split",
                            "switch_sigma": split["switch_sigma"],
                            **{m: {"model": split[f"{m}_info"]["model"], "sigmas": split[f"{m}_info"]["sigmas"]}
                               for m in _MEMBERS}},
            "network": "$medscore_bundle.load_split_weights(@network_def, @bundle_root + '/models').to(@device)"}


def inference_config(info: dict[str, Any], task: str = "mri", orientation: str | None = "RAS") -> dict[str, Any]:
    """The ``inference.json`` of a bundle for the model described by ``info`` (its ``model.json``; for a level
    split, the fine member's with ``level_split`` holding ``switch_sigma`` and ``coarse_info`` / ``fine_info``)."""
    lo, hi = info["intensity"]["percentiles"]
    return {
        "imports": ["$import glob", "$import os", "$import torch", "$import medscore.monai.bundle as medscore_bundle"],
        "bundle_root": ".", "dataset_dir": "$@bundle_root + '/data'", "output_dir": "$@bundle_root + '/eval'",
        "output_postfix": "medscore", "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "task": task, "mask_file": None, "mask_pattern": "random", "accel": 4.0, "center": 0.08, "mask_seed": 0,
        "noise_std": None, "method": "tweedie", "preset": "default", "num_levels": None, "samples": None, "seed": 0,
        "batch_size": 4, "spatial_axis": 2,
        **_network_entries(info),
        "preprocessing": {"_target_": "medscore.transforms.inference_transforms", "percentiles": [lo, hi],
                          "orientation": orientation},
        "dataset_data": "$[{'image': f} for f in sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))]",
        "dataset": {"_target_": "Dataset", "data": "@dataset_data", "transform": "@preprocessing"},
        "sampler_options": {"_target_": "medscore.solvers.SamplerOptions", "preset": "@preset",
                            "num_levels": "@num_levels", "samples": "@samples", "seed": "@seed"},
        "inferer": {"_target_": "medscore.monai.inferer.ScoreInferer", "task": "@task", "mask": "@mask_file",
                    "opts": "@sampler_options", "noise_std": "@noise_std", "method": "@method",
                    "batch_size": "@batch_size", "spatial_axis": "@spatial_axis", "mask_pattern": "@mask_pattern",
                    "accel": "@accel", "center": "@center", "mask_seed": "@mask_seed"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "@output_postfix",
             "separate_folder": False, "resample": False, "output_dtype": "$torch.float32", "print_log": False},
        ]},
        "run": ["$medscore_bundle.run_inference(@dataset, @network, @inferer, @postprocessing, @device)"],
    }


def metadata(info: dict[str, Any], task: str) -> dict[str, Any]:
    """``metadata.json``: versions, task and the network's input/output format."""
    import monai
    import numpy

    io = {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1, "spatial_shape": ["*", "*"],
          "dtype": "float32", "value_range": [0, 1], "is_patch_data": False, "channel_def": {"0": "image"}}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": "0.1.0", "changelog": {"0.1.0": f"exported by medscore {__version__}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__, "required_packages_version": {"medscore": __version__},
        "name": "medscore score prior", "task": f"score-based posterior sampling ({task})",
        "description": "NCSN score prior with annealed Langevin posterior sampling for MRI, inpainting and denoising.",
        "authors": "medscore", "copyright": "see the medscore licence and the model card",
        "intended_use": "research only, not for clinical use", "image_classes": "single-channel MR slices on [0, 1]",
        "network_data_format": {"inputs": {"image": io}, "outputs": {"pred": {**io, "value_range": ["*", "*"]}}},
    }


README = """# medscore score prior (MONAI bundle)

Exported by medscore {version} from `{source}`. Research use only, not for clinical use.

Run the posterior sampler on every NIfTI file in a folder (outputs `<name>_medscore.nii.gz`, voxel-aligned
with the input, in the scanner's units):

    python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
        --dataset_dir /path/to/scans --output_dir /path/to/out

Overridable ids (`--id value`): `task` (mri | inpaint | denoise), `mask_file` (a 0/1 .npy: the k-space
mask for mri, known pixels for inpaint; default for mri: a `mask_pattern` mask at `accel` x), `noise_std`
(denoise, [0, 1] scale), `preset` (fast | default | best), `num_levels`, `samples`, `seed`, `batch_size`
(int or "auto"), `spatial_axis`, `device`. Scans are reoriented to `{orientation}` before slicing (the
model was trained on RAS axial slices) and mapped back by `Invertd`; for a RAS scan the result equals
`medscore reconstruct SCAN --mask MASK` with the same options.

Files: `models/model.safetensors` (weights) and `models/model.json` (medscore's model description: also
usable as `medscore reconstruct --model models`; a level-split prior has `models/coarse/` and `models/fine/`,
one network each, and `models/model.json` names them), `configs/inference.json`, `configs/metadata.json`.
"""


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _copy_model(weights: Path, dest: Path) -> dict[str, Any]:
    """Copy one model's weights and ``model.json`` into ``dest`` (atomically each); returns its description.
    The caller has checked with ``load_model`` that the pair loads."""
    info_path = weights.parent / "model.json"
    for name, src in (("model.safetensors", weights), ("model.json", info_path)):
        with atomic_path(dest / name) as tmp:
            shutil.copyfile(src, tmp)
    return json.loads(info_path.read_text())


def _copy_level_split(prior: Any, models: Path) -> dict[str, Any]:
    """``models/coarse``, ``models/fine`` and a ``models/model.json`` naming them (usable as ``--model``)."""
    from ..priors.split_folder import member_refs
    from ..priors.store import save_level_split

    refs = member_refs(prior.path)
    weights = {m: load_prior(refs[m], "cpu").path for m in _MEMBERS}
    for path in weights.values():  # both copies must load on their own, checked before anything is written
        load_model(path)
    infos = {m: _copy_model(weights[m], models / m) for m in _MEMBERS}
    split = prior.meta["level_split"]
    save_level_split(models, "coarse", "fine", split["switch_sigma"], name=prior.meta.get("name"),
                     presets=prior.meta.get("presets"), card=prior.meta.get("card"), verify=False)
    return {**infos["fine"], "level_split": {"switch_sigma": split["switch_sigma"],
                                             **{f"{m}_info": infos[m] for m in _MEMBERS}}}


def export_bundle(directory: str | Path, model: Any = None, *, task: str = "mri",
                  orientation: str | None = "RAS") -> Path:
    """Write a MONAI bundle for ``model`` (default: the bundled prior) into the new or empty ``directory``.

    A level-split prior (such as the default one) exports both networks: ``models/coarse``, ``models/fine``,
    and a ``network_def`` that builds the pair."""
    from ..pipeline.outputs import check_writable
    from ..tasks import get_task

    get_task(task)  # an unknown task: one line naming the known ones, before anything is written
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"{root} exists and is not an empty folder: choose a new bundle folder")
    prior = load_prior(model, "cpu")
    check_writable(root / "models")
    if "level_split" in prior.meta:
        info = _copy_level_split(prior, root / "models")
    else:
        load_model(prior.path)  # the copy must be loadable on its own: weights and description agree
        info = _copy_model(prior.path, root / "models")
    _write_text(root / "configs" / "inference.json", json.dumps(inference_config(info, task, orientation), indent=2))
    _write_text(root / "configs" / "metadata.json", json.dumps(metadata(info, task), indent=2))
    source = "the bundled prior" if model is None else str(model)
    _write_text(root / "docs" / "README.md", README.format(version=__version__, source=source, orientation=orientation))
    return root
