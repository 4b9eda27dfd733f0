"""Typed configs from YAML/dicts: round trip, unknown keys and wrong types -> ConfigError; the embedded data split."""

from __future__ import annotations

import numpy as np
import pytest

from medscore.config import (DataConfig, ModelConfig, NoiseConfig, TrainConfig, config_from_dict, config_to_dict,
                             load_config, replace)
from medscore.errors import ConfigError


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = TrainConfig(model=ModelConfig(arch="ncsnv2", ngf=16), noise=NoiseConfig(sigma_max=2.0, num_levels=7),
                      data=DataConfig(path="scans/", percentiles=(1.0, 99.0), zoom=(0.9, 1.1)), steps=5)
    d = config_to_dict(cfg)
    assert d["data"]["percentiles"] == [1.0, 99.0]  # JSON-safe
    back = config_from_dict(TrainConfig, d)
    assert back == cfg and isinstance(back.data.percentiles, tuple)
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(d))
    assert load_config(p) == cfg
    for f in sorted((__import__("pathlib").Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(f)  # the shipped configs are valid


@pytest.mark.parametrize("data", [
    {"colour": 1},
    {"model": {"arch": "vit"}},
    {"model": {"ngf": "wide"}},
    {"model": {"ngf": 8.5}},
    {"steps": 2.5},
    {"amp": "yes"},
    {"noise": {"sigma_max": "autoo"}},
    {"noise": {"num_levels": 5.5}},
    {"noise": {"num_levels": "10"}},
    {"noise": {"sigma_max": 0.001, "sigma_min": 0.01}},
    {"noise": {"num_levels": 1}},
    {"data": {"path": 3}},
    {"data": {"percentiles": 99}},
    {"data": "all"},
])
def test_bad_values(data):
    with pytest.raises(ConfigError):
        config_from_dict(TrainConfig, data)


def test_coercions():
    c = config_from_dict(TrainConfig, {"lr": 1, "noise": {"sigma_max": 2, "num_levels": 5.0}, "data": {"path": None}})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.noise.sigma_max == 2.0 and isinstance(c.noise.sigma_max, float)
    assert c.noise.num_levels == 5 and isinstance(c.noise.num_levels, int)
    assert c.data.path is None


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == TrainConfig()


def test_replace_ignores_none():
    cfg = TrainConfig()
    assert replace(cfg, steps=None, seed=3) == TrainConfig(seed=3)


def test_embedded_split_keeps_held_out_slabs_out_of_training():
    from medscore.io.embedded import GUARD, TEST_SLAB, VAL_SLAB, training_blocks

    z = 193
    vol = np.broadcast_to(np.arange(z, dtype=np.float32), (3, 4, 5, z))  # voxel value = its z index
    blocks = training_blocks(vol)
    banned = set(range(TEST_SLAB[0] - GUARD, TEST_SLAB[1] + GUARD))
    banned |= set(range(VAL_SLAB[0] - GUARD, VAL_SLAB[1] + GUARD))
    covered = set()
    for block, axes in blocks:
        zs = set(np.unique(block[0]).astype(int).tolist())
        assert not zs & banned
        covered |= zs
        if zs and min(zs) > TEST_SLAB[1] and max(zs) < VAL_SLAB[0]:
            assert axes == (2,)  # between the slabs: axial slices only (coronal/sagittal ones would cross them)
    assert covered == set(range(z)) - banned  # everything else is used
