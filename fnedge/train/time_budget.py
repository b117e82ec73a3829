"""Fit a training run into a wall-clock budget: time the steps, then set how many the run takes.

A fixed step count cannot promise "30 minutes" on every laptop: fc-micro's steps run about 2.5x
slower on a CPU without bf16 units (fp32) than on one with them. So the trainer times its own
steps and, where the planned steps would not fit, plans fewer; the learning-rate schedule is
stretched over the new number, so a shortened run still ends cooled down instead of being cut off
mid-schedule. The plan is redone every `REPLAN_EVERY` steps, as the machine's speed drifts.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

FIRST_PLAN_STEP = 100     # before the warm-up (150 steps) ends, so the warm-up is the same either way
REPLAN_EVERY = 100
WARMUP_STEPS_IGNORED = 20  # torch.compile compiles during the first steps of each invocation
MIN_TIMED_STEPS = 20       # a plan needs at least this many timed steps
SAFETY = 1.03             # steps slow down a little as the machine warms and other work comes and goes
# After the last step: saving the model, the process's exit, and what the plan misjudged. At 20 s two
# 30-minute runs of session 21 ended 0.6 s and 1.4 s late (last checkpoints 4 s and 12 s after the plan).
RESERVE_SECONDS = 30.0
DEV_PASS_GUESS = 0.02     # a dev pass's share of the budget, until one has been timed


@dataclass
class TimeBudget:
    """The wall-clock seconds a run may take, counted from `started` (time.monotonic() when this
    invocation began, before its data and tokenizer) plus the seconds earlier invocations of a
    resumed run spent."""
    seconds: float
    started: float
    spent_before: float = 0.0
    step_seconds: deque = field(default_factory=lambda: deque(maxlen=200))
    dev_pass_seconds: float | None = None
    _steps_this_invocation: int = 0

    def elapsed(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def record_step(self, seconds: float) -> None:
        self._steps_this_invocation += 1
        if self._steps_this_invocation > WARMUP_STEPS_IGNORED:
            self.step_seconds.append(seconds)

    def record_dev_pass(self, seconds: float) -> None:
        self.dev_pass_seconds = seconds

    def mean_step_seconds(self) -> float:
        return sum(self.step_seconds) / len(self.step_seconds)

    def due(self, step: int) -> bool:
        return step >= FIRST_PLAN_STEP and step % REPLAN_EVERY == 0 and len(self.step_seconds) >= MIN_TIMED_STEPS

    def plan(self, step: int, planned: int, eval_every: int, final_passes: int) -> int:
        """The run's total steps from here: `planned`, or fewer so that it ends within the budget."""
        pass_seconds = self.dev_pass_seconds if self.dev_pass_seconds is not None else DEV_PASS_GUESS * self.seconds
        return steps_that_fit(step, planned, self.seconds - self.elapsed(), self.mean_step_seconds(),
                              pass_seconds, eval_every, final_passes)


def steps_that_fit(step: int, planned: int, seconds_left: float, step_seconds: float, pass_seconds: float,
                   eval_every: int, final_passes: int) -> int:
    """Total steps (at least `step`, at most `planned`) whose remaining steps, the dev passes due
    every `eval_every` steps on the way, the `final_passes` at the end and RESERVE_SECONDS fit in
    `seconds_left`."""
    usable = seconds_left - RESERVE_SECONDS - final_passes * pass_seconds
    per_step = step_seconds * SAFETY + pass_seconds / eval_every  # the periodic passes, spread over steps
    more = math.floor(usable / per_step) if usable > 0 else 0
    return max(step, min(planned, step + more))
