"""The learning-rate schedule: warm-up ramp, constant rate, cosine decay to lr_final; config checks."""

from __future__ import annotations

import math

import pytest

from medscore.config import TrainConfig, config_from_dict
from medscore.errors import ConfigError
from medscore.training.lr_schedule import learning_rate


def rates(schedule: str, steps: int = 101, warmup: int = 10, lr: float = 1.0, lr_final: float = 0.0) -> list[float]:
    return [learning_rate(s, lr=lr, steps=steps, warmup_steps=warmup, schedule=schedule, lr_final=lr_final)
            for s in range(steps)]


def test_warm_up_is_a_linear_ramp_to_lr():
    for schedule in ("constant", "cosine"):
        r = rates(schedule)
        assert r[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])


def test_constant_keeps_lr_after_warm_up():
    assert rates("constant")[10:] == [1.0] * 91
    assert rates("constant", warmup=0) == [1.0] * 101  # no warm-up: the full rate from the first step


def test_cosine_falls_from_lr_to_lr_final_along_half_a_cosine():
    r = rates("cosine", lr=2.0, lr_final=0.5)
    assert r[10] == pytest.approx(2.0) and r[-1] == pytest.approx(0.5)  # the last step reaches lr_final
    assert r[55] == pytest.approx(1.25)  # half-way through the decay: the mean of the two rates
    # 0.5 + 0.75 (1 + cos(pi t)) at t = 1/3 of the decay
    assert r[40] == pytest.approx(0.5 + 0.75 * (1 + math.cos(math.pi / 3)))
    assert all(a >= b for a, b in zip(r[10:], r[11:]))  # never rises after warm-up


def test_steps_past_the_end_stay_at_lr_final():
    assert learning_rate(500, lr=1.0, steps=101, warmup_steps=10, schedule="cosine", lr_final=0.1) == pytest.approx(0.1)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate(0, lr=1.0, steps=10, warmup_steps=0, schedule="step")


@pytest.mark.parametrize("data", [{"lr_schedule": "step"}, {"lr_final": -1e-5}, {"lr": 1e-4, "lr_final": 2e-4},
                                  {"lr_final": "low"}])
def test_config_refuses_bad_schedules(data):
    with pytest.raises(ConfigError):
        config_from_dict(TrainConfig, data)


def test_config_default_is_the_constant_rate():
    cfg = TrainConfig()
    assert cfg.lr_schedule == "constant"
    assert config_from_dict(TrainConfig, {"lr_schedule": "cosine", "lr_final": 1e-6}).lr_schedule == "cosine"
