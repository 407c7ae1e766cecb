"""CloudWatch alarm semantics, as documented for metric alarms:

- a datapoint is one period's statistic over the samples in it (Average, Sum, Maximum); a period with
  no sample has no datapoint;
- at each evaluation the alarm looks at the last ``evaluation_periods`` (M) datapoints and goes to ALARM
  when at least ``datapoints_to_alarm`` (N) of them breach, to OK otherwise;
- missing datapoints are treated as configured: ``notBreaching`` (good), ``breaching`` (bad),
  ``ignore`` (a missing datapoint is skipped: the state stays as it is and the window holds the last M
  present datapoints), ``missing`` (only present datapoints count; INSUFFICIENT_DATA when every
  datapoint in the window is missing).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


class State(Enum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


def aggregate(samples: list[float], statistic: str) -> float | None:
    """One period's datapoint from its samples; None when the period has none (a missing datapoint)."""
    if not samples:
        return None
    if statistic == "Average":
        return sum(samples) / len(samples)
    if statistic == "Sum":
        return sum(samples)
    if statistic == "Maximum":
        return max(samples)
    if statistic == "Minimum":
        return min(samples)
    raise ValueError(f"unsupported statistic {statistic}")


@dataclass
class Alarm:
    name: str
    threshold: float
    comparison: str
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str = "missing"
    state: State = State.INSUFFICIENT_DATA
    history: deque[float | None] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.comparison not in COMPARATORS:
            raise ValueError(f"unknown comparison {self.comparison}")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError("need 1 <= datapoints_to_alarm <= evaluation_periods")
        self.history = deque(maxlen=self.evaluation_periods)

    def evaluate(self, datapoint: float | None) -> State:
        """Add this period's datapoint (None: missing) and return the new state."""
        if datapoint is not None and math.isnan(datapoint):
            datapoint = None
        if datapoint is None and self.treat_missing_data == "ignore":
            return self.state
        self.history.append(datapoint)
        compare = COMPARATORS[self.comparison]
        present = [value for value in self.history if value is not None]
        missing = len(self.history) - len(present)
        breaching = sum(1 for value in present if compare(value, self.threshold))
        if self.treat_missing_data == "breaching":
            breaching += missing
        elif self.treat_missing_data == "missing" and not present:
            self.state = State.INSUFFICIENT_DATA
            return self.state
        self.state = State.ALARM if breaching >= self.datapoints_to_alarm else State.OK
        return self.state
