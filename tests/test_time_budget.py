import json

import pytest

from conftest import tiny_config
from fnedge.errors import FnedgeError
from fnedge.train.config import TrainConfig
from fnedge.train.time_budget import FIRST_PLAN_STEP, RESERVE_SECONDS, SAFETY, steps_that_fit
from fnedge.train.trainer import train


def test_the_planned_steps_stand_when_they_fit():
    assert steps_that_fit(100, planned=5000, seconds_left=3600, step_seconds=0.3, pass_seconds=10,
                          eval_every=2500, final_passes=2) == 5000


def test_a_slow_machine_gets_the_steps_that_fit_and_their_dev_passes():
    per_step = 0.8 * SAFETY + 30 / 2500
    seconds_left = RESERVE_SECONDS + 2 * 30 + 1000 * per_step + 1e-6
    assert steps_that_fit(100, planned=5000, seconds_left=seconds_left, step_seconds=0.8, pass_seconds=30,
                          eval_every=2500, final_passes=2) == 1100
    # a budget already spent ends the run where it stands, never before it
    assert steps_that_fit(300, planned=5000, seconds_left=-5, step_seconds=0.8, pass_seconds=30,
                          eval_every=2500, final_passes=2) == 300


def test_a_run_over_its_budget_ends_early_and_says_how_many_steps_it_planned(tmp_path, capsys):
    # ~150 planned steps; a budget of under a second is spent before the first plan, at step 100
    config = tiny_config(epochs=5.0, eval_every=1000, checkpoint_every=1000, time_budget_minutes=0.01)
    model = train(config, tmp_path)
    record = json.loads((model / "fnedge.json").read_text())
    assert record["planned_steps"] > FIRST_PLAN_STEP
    assert record["steps"] == FIRST_PLAN_STEP
    assert record["dev_loss"] is not None  # the shortened run still ends with its dev pass
    assert record["wall_seconds"] > 0
    shown = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"the run takes {FIRST_PLAN_STEP} of {record['planned_steps']} planned steps" in shown


def test_the_budget_counts_from_when_the_command_began(tmp_path):
    # the CLI passes the moment before its imports; a command that began 31 minutes ago has spent a 30-minute budget
    import time

    config = tiny_config(epochs=5.0, eval_every=1000, checkpoint_every=1000, time_budget_minutes=30)
    model = train(config, tmp_path, started=time.monotonic() - 31 * 60)
    record = json.loads((model / "fnedge.json").read_text())
    assert record["planned_steps"] > FIRST_PLAN_STEP
    assert record["steps"] == FIRST_PLAN_STEP
    assert record["wall_seconds"] > 31 * 60


def test_without_a_budget_the_run_takes_every_planned_step(tmp_path):
    model = train(tiny_config(epochs=5.0, eval_every=1000, checkpoint_every=1000, time_budget_minutes=0), tmp_path)
    record = json.loads((model / "fnedge.json").read_text())
    assert record["steps"] == record["planned_steps"] > FIRST_PLAN_STEP


def test_a_negative_budget_is_named():
    with pytest.raises(FnedgeError, match="'time_budget_minutes' must be a number >= 0"):
        TrainConfig.from_dict({"time_budget_minutes": -1})
