"""The five-field cron expressions of Auto Scaling scheduled actions, matched minute by minute."""

from __future__ import annotations

from datetime import datetime

DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
MONTH_NAMES = {
    m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)
}


def _value(token: str, names: dict[str, int]) -> int:
    return names[token.upper()] if token.upper() in names else int(token)


def _field(expression: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in expression.split(","):
        part, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-")
            start, end = _value(first, names), _value(last, names)
        else:
            start = end = _value(part, names)
        values.update(range(start, end + 1, step))
    return values


class Cron:
    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"cron {expression!r} needs 5 fields")
        self.minutes = _field(fields[0], 0, 59, {})
        self.hours = _field(fields[1], 0, 23, {})
        self.days = _field(fields[2], 1, 31, {})
        self.months = _field(fields[3], 1, 12, MONTH_NAMES)
        self.weekdays = {d % 7 for d in _field(fields[4], 0, 7, DAY_NAMES)}  # 0 and 7 are Sunday
        self.any_day, self.any_weekday = fields[2] == "*", fields[4] == "*"

    def matches(self, moment: datetime) -> bool:
        if moment.minute not in self.minutes or moment.hour not in self.hours or moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:  # cron: restricted fields must both match, '*' matches all
            return day_ok and weekday_ok
        return day_ok or weekday_ok
