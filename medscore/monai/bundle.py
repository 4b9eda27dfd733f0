"""Export a score prior as a MONAI bundle that ``python -m monai.bundle run`` executes on NIfTI files.

Layout: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.safetensors`` and
``models/model.json`` (so ``--model DIR/models`` works with medscore too) and ``docs/README.md``.
The score network is built from the config (``score_def``: ``medscore.monai.bundle.build_network`` from the model
description) and its safetensors weights are loaded by ``medscore.monai.bundle.load_weights`` (checked as medscore
checks a model folder); ``network_def`` is that network at one noise level (:class:`FixedLevelScore`, the one-input
network that ``python -m monai.bundle verify_net_in_out network_def`` calls); preprocessing is
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
from ..priors.checkpoint import META, attach_adaptation, load_model, read_weights, trained_with_flips
from ..priors.checks import check_meta, check_presets, read_description
from ..config import ModelConfig, config_from_dict
from ..errors import CheckpointError, InputError
from ..io.atomic import atomic_path
from ..priors.store import load_prior
from ..nets import build_model

__all__ = ["export_bundle", "build_network", "build_level_split", "load_weights", "load_split_weights", "run_inference",
           "inference_config", "metadata", "FixedLevelScore"]
_MEMBERS = ("coarse", "fine")


class FixedLevelScore(torch.nn.Module):
    """``forward(x) = score(x, sigma)`` at the fixed noise level ``sigma``: the score network with the one input
    MONAI's bundle tools give a network (``verify_net_in_out``). ``score`` is the network the inferer samples with."""

    def __init__(self, score: torch.nn.Module, sigma: float) -> None:
        super().__init__()
        self.score, self.sigma = score, float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x, torch.full((x.shape[0],), self.sigma, dtype=x.dtype, device=x.device))


def build_network(model: dict[str, Any], sigmas: Sequence[float]) -> torch.nn.Module:
    """The score network a medscore model description (``model.json``'s ``model`` and ``sigmas``) names."""
    return build_model(config_from_dict(ModelConfig, model), torch.tensor(list(sigmas), dtype=torch.float32))


def load_weights(network: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load safetensors weights into ``network`` (strict) and return it in eval mode, in the memory layout of
    every loaded medscore model (:func:`medscore.nets.accelerate.inference_layout`). The ``model.json`` beside the
    weights, when there is one, checks them as :func:`~medscore.priors.checkpoint.load_model` does (SHA-256, finite
    tensors, noise levels) and gives the network its tuned presets and flip rule."""
    from safetensors.torch import load_file

    from ..nets.accelerate import inference_layout

    path = Path(path)
    meta = read_description(path.parent / META) if (path.parent / META).is_file() else None
    if meta is not None:
        check_meta(meta, path.parent / META)
    state = load_file(str(path)) if meta is None else read_weights(path, meta)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the bundle's network ({str(exc).splitlines()[0]})") \
            from None
    if meta is not None:  # what load_model attaches besides the weights
        presets = check_presets(meta.get("presets"), path.parent / META)
        if presets is not None:
            network.presets = presets  # type: ignore[assignment]
        attach_adaptation(network, meta.get("adaptation"), path.parent / META)
        network.flip_invariant = trained_with_flips(meta)  # type: ignore[assignment]
    return inference_layout(network.eval())


def build_level_split(coarse: dict[str, Any], fine: dict[str, Any], switch_sigma: float) -> torch.nn.Module:
    """The :class:`~medscore.nets.level_split.LevelSplitScore` of two model descriptions (``model`` and ``sigmas``
    of each member's ``model.json``): the network of a bundle exported from a level-split prior."""
    from ..nets.level_split import LevelSplitScore

    return LevelSplitScore(build_network(coarse["model"], coarse["sigmas"]),
                           build_network(fine["model"], fine["sigmas"]), switch_sigma)


def load_split_weights(network: torch.nn.Module, models_dir: str | Path) -> torch.nn.Module:
    """Load ``models_dir/coarse`` and ``models_dir/fine`` weights into a :func:`build_level_split` network (each
    checked by :func:`load_weights`); the presets are those of ``models_dir/model.json``, else the fine member's."""
    for member in _MEMBERS:
        load_weights(getattr(network, member), Path(models_dir) / member / "model.safetensors")
    network.flip_invariant = all(getattr(getattr(network, m), "flip_invariant", True) for m in _MEMBERS)
    presets, adaptation = getattr(network.fine, "presets", None), getattr(network.fine, "adaptation", None)
    split = Path(models_dir) / META
    if split.is_file():
        meta = read_description(split)
        presets = check_presets(meta.get("presets"), split) or presets
        adaptation = meta.get("adaptation", adaptation)
    if presets is not None:
        network.presets = presets
    attach_adaptation(network, adaptation, split)
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
    """``score_def`` (one network, or a level split's two), ``network_def`` (it at ``score_sigma``, one input, for
    MONAI's ``verify_net_in_out``) and ``network`` (the score network with its weights, for the inferer)."""
    sigmas = info["sigmas"]
    fixed = {"score_sigma": float(sigmas[len(sigmas) // 2]),
             "network_def": {"_target_": "medscore.monai.bundle.FixedLevelScore", "score": "@score_def",
                             "sigma": "@score_sigma"}}
    if "level_split" not in info:
        return {"score_def": {"_target_": "medscore.monai.bundle.build_network", "model": info["model"],
                              "sigmas": sigmas}, **fixed,
                "network": "$medscore_bundle.load_weights(@network_def.score, @bundle_root + "
                           "'/models/model.safetensors').to(@device)"}
    split = info["level_split"]
    return {"score_def": {"_target_": "medscore.monai.bundle.build_level_split", "switch_sigma": split["switch_sigma"],
                          **{m: {"model": split[f"{m}_info"]["model"], "sigmas": split[f"{m}_info"]["sigmas"]}
                             for m in _MEMBERS}}, **fixed,
            "network": "$medscore_bundle.load_split_weights(@network_def.score, @bundle_root + '/models').to(@device)"}


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
        "batch_size": 4, "spatial_axis": 2, "adapt": False,
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
                    "accel": "@accel", "center": "@center", "mask_seed": "@mask_seed", "adapt": "@adapt"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "@output_postfix",
             "separate_folder": False, "resample": False, "output_dtype": "$torch.float32", "print_log": False},
        ]},
        "run": ["$medscore_bundle.run_inference(@dataset, @network, @inferer, @postprocessing, @device)"],
    }


def metadata(info: dict[str, Any], task: str) -> dict[str, Any]:
    """``metadata.json``: versions, task and the format of ``network_def``'s input and output: a batch of
    one-channel slices on [0, 1] (any size; ``8*n`` a side, n >= 1, is what ``verify_net_in_out`` tries) in, their
    score at ``score_sigma`` out (same shape, any value). The bundle's result is the posterior mean on the scan's
    scale."""
    import monai
    import numpy

    channels = int(info["model"].get("in_channels", 1))
    io = {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": channels,
          "spatial_shape": ["8*n", "8*n"], "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
          "channel_def": {"0": "image"}}
    score = {**io, "format": "score", "value_range": ["*", "*"], "channel_def": {"0": "score"}}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": "0.1.0", "changelog": {"0.1.0": f"exported by medscore {__version__}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__, "required_packages_version": {"medscore": __version__},
        "name": "medscore score prior", "task": f"score-based posterior sampling ({task})",
        "description": "NCSN score prior with posterior sampling for MRI, inpainting and denoising. network_def is the "
                       "score network at the noise level score_sigma (inference.json); run returns posterior means.",
        "authors": "medscore", "copyright": "see the medscore licence and the model card",
        "intended_use": "research only, not for clinical use", "image_classes": "single-channel MR slices on [0, 1]",
        "network_data_format": {"inputs": {"image": io}, "outputs": {"pred": score}},
    }


README = """# medscore score prior (MONAI bundle)

Exported by medscore {version} from `{source}`. Research use only, not for clinical use.

Run the posterior sampler on every NIfTI file in a folder (outputs `<name>_medscore.nii.gz`, voxel-aligned
with the input, in the scanner's units):

    python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
        --dataset_dir /path/to/scans --output_dir /path/to/out

Check the network against `configs/metadata.json` (`network_def` is the score network at the noise level
`score_sigma`, one input as MONAI's tools give it; `network` is the score network the sampler calls):

    python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
        --config_file configs/inference.json

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
    """Copy one model's weights (as ``model.safetensors``) and ``model.json`` into ``dest`` (atomically each); returns
    its description. The caller has checked with ``load_model`` that the pair loads: weights under another name
    (``model_raw.safetensors``) matched a recorded hash, and the copy's description records it as ``sha256``."""
    from ..priors.checkpoint import sha256

    info = read_description(weights.parent / META)
    with atomic_path(dest / "model.safetensors") as tmp:
        shutil.copyfile(weights, tmp)
        if weights.name != "model.safetensors":
            info["sha256"] = sha256(tmp)
    with atomic_path(dest / META) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return info


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
    and a ``score_def`` that builds the pair. The bundle solves one-channel (magnitude) scans: a complex
    (2-channel) prior is refused before anything is written."""
    from ..pipeline.outputs import check_writable
    from ..tasks import get_task

    get_task(task)  # an unknown task: one line naming the known ones, before anything is written
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"{root} exists and is not an empty folder: choose a new bundle folder")
    prior = load_prior(model, "cpu")
    channels = int(getattr(prior.model, "in_channels", 1))
    if channels != 1:
        raise InputError(f"{model}: a {channels}-channel (real, imaginary) prior; the MONAI bundle solves one-channel "
                         "(magnitude) NIfTI scans: export a one-channel prior")
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
