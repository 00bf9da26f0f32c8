"""Learning-rate schedules (scaling/train.lr_schedule): warmup-cosine and warmup-stable-decay."""
import numpy as np
import pytest

from scaling import train as train_lib

CONFIG = {"lr": 1e-2, "warmup_steps": 10, "min_lr_ratio": 0.1}


def test_wsd_warms_up_holds_then_decays_linearly_over_the_last_fraction():
  schedule = train_lib.lr_schedule({**CONFIG, "schedule": "wsd", "decay_fraction": 0.2}, 100)
  lr = lambda step: float(schedule(step))
  assert lr(0) == 0 and lr(5) == pytest.approx(5e-3)
  assert lr(10) == lr(50) == lr(80) == pytest.approx(1e-2)  # stable until step 80 = 100 - 0.2 * 100
  assert lr(90) == pytest.approx((1e-2 + 1e-3) / 2)
  assert lr(100) == pytest.approx(1e-3)


def test_cosine_is_the_default_and_decays_from_the_end_of_warmup():
  schedule = train_lib.lr_schedule(CONFIG, 100)
  values = np.array([float(schedule(s)) for s in range(10, 101)])
  assert values[0] == pytest.approx(1e-2) and values[-1] == pytest.approx(1e-3)
  assert (np.diff(values) < 0).all()  # no stable phase
  assert float(schedule(55)) == pytest.approx(1e-3 + 0.5 * 9e-3, rel=1e-3)


def test_wsd_when_warmup_and_decay_overlap_decays_right_after_warmup():
  schedule = train_lib.lr_schedule({**CONFIG, "schedule": "wsd", "decay_fraction": 0.95}, 20)
  assert float(schedule(10)) == pytest.approx(1e-2) and float(schedule(20)) == pytest.approx(1e-3)
