"""Traffic profiles: requests per second over time, at a fixed step.

Built-in profiles (all deterministic; docs/planner.md, draws them):
- ``diurnal-week``: the documented default traffic. A business-hours week in UTC: weekdays 2 req/s at
  night, ramping 07:00-09:00 to a 600 req/s plateau (with a gentle midday swell), down 17:00-20:00;
  weekends at 12% of a weekday.
- ``flat``: 200 req/s for a day.
- ``spiky``: 80 req/s for a day with sudden 5x bursts of 10 minutes every 3 hours.
- ``launch-day``: 20 req/s ramping to 900 req/s over 12 hours, then holding, for a day.
- ``office-hours``: a week with real idle time: weekdays 40 req/s from 08:00 to 18:00 UTC (ramping over
  the first and last hour), no request at all at night and on the weekend.
A CSV file gives any other profile: a header ``timestamp,rps``, timestamps ISO-8601 or seconds.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DAY = 86_400.0


@dataclass(frozen=True)
class Traffic:
    name: str
    step_s: float
    rps: list[float]  # one value per step, from t = 0

    @property
    def duration_s(self) -> float:
        return self.step_s * len(self.rps)

    @property
    def peak(self) -> float:
        return max(self.rps)

    def requests(self) -> float:
        return sum(self.rps) * self.step_s

    def has_idle_period(self, minutes: float) -> bool:
        """Whether some stretch of ``minutes`` has no request at all (where scaling to zero can pay)."""
        needed, run = math.ceil(minutes * 60 / self.step_s), 0
        for rate in self.rps:
            run = run + 1 if rate == 0 else 0
            if run >= needed:
                return True
        return False


def _sampled(name: str, days: float, step_s: float, rate: Callable[[float], float]) -> Traffic:
    return Traffic(name, step_s, [max(0.0, rate(i * step_s)) for i in range(int(days * DAY / step_s))])


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def diurnal_weekday(t_of_day: float, night: float = 2.0, peak: float = 600.0) -> float:
    hour = t_of_day / 3600
    up = _smoothstep((hour - 7) / 2)  # 07:00 -> 09:00
    down = 1 - _smoothstep((hour - 17) / 3)  # 17:00 -> 20:00
    swell = 1 + 0.08 * math.sin(math.pi * min(1.0, max(0.0, (hour - 9) / 8)))  # midday swell
    return night + (peak - night) * min(up, down) * swell


def diurnal_week(step_s: float = 10.0) -> Traffic:
    def rate(t: float) -> float:
        day, t_of_day = divmod(t, DAY)
        weekday = diurnal_weekday(t_of_day)
        return weekday if day < 5 else 0.12 * weekday

    return _sampled("diurnal-week", 7, step_s, rate)


def flat(step_s: float = 10.0) -> Traffic:
    return _sampled("flat", 1, step_s, lambda t: 200.0)


def spiky(step_s: float = 10.0) -> Traffic:
    def rate(t: float) -> float:
        in_burst = (t % (3 * 3600)) >= 3 * 3600 - 600  # the last 10 minutes of every 3 hours
        return 400.0 if in_burst else 80.0

    return _sampled("spiky", 1, step_s, rate)


def launch_day(step_s: float = 10.0) -> Traffic:
    return _sampled("launch-day", 1, step_s, lambda t: 20 + 880 * _smoothstep(t / (12 * 3600)))


def office_hours(step_s: float = 10.0) -> Traffic:
    def rate(t: float) -> float:
        day, t_of_day = divmod(t, DAY)
        hour = t_of_day / 3600
        if day >= 5 or not 8 <= hour < 18:
            return 0.0
        return 40.0 * min(_smoothstep(hour - 8), 1 - _smoothstep(hour - 17))

    return _sampled("office-hours", 7, step_s, rate)


PROFILES: dict[str, Callable[..., Traffic]] = {
    "diurnal-week": diurnal_week,
    "flat": flat,
    "spiky": spiky,
    "launch-day": launch_day,
    "office-hours": office_hours,
}


def _seconds(value: str, origin: datetime | None) -> tuple[float, datetime | None]:
    try:
        return float(value), origin
    except ValueError:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        origin = origin or moment
        return (moment - origin).total_seconds(), origin


def from_csv(path: Path, step_s: float = 10.0) -> Traffic:
    """Read ``timestamp,rps`` rows; each rate holds until the next timestamp (step-wise)."""
    points: list[tuple[float, float]] = []
    origin: datetime | None = None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or {"timestamp", "rps"} - set(reader.fieldnames):
            raise ValueError(f"{path}: the header must be 'timestamp,rps'")
        for row in reader:
            seconds, origin = _seconds(row["timestamp"].strip(), origin)
            points.append((seconds, float(row["rps"])))
    if len(points) < 2:
        raise ValueError(f"{path}: at least two rows are needed")
    points.sort()
    start = points[0][0]
    steps = int((points[-1][0] - start) / step_s) + 1
    rps, index = [], 0
    for step in range(steps):
        t = start + step * step_s
        while index + 1 < len(points) and points[index + 1][0] <= t:
            index += 1
        rps.append(max(0.0, points[index][1]))
    return Traffic(path.stem, step_s, rps)
