"""Counting frequent events into one log line per interval instead of one line each."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter


class Tally:
    """Counts events by reason; the first event of an interval schedules one summary line at its end
    ("refused 812 requests in the last 10 s: 503 over the latency target 800, 401 no key 12").
    Needs a running event loop."""

    def __init__(self, logger: logging.Logger, what: str, every_s: float = 10.0) -> None:
        self.logger = logger
        self.what = what
        self.every_s = every_s
        self.counts: Counter[str] = Counter()

    def add(self, reason: str) -> None:
        if not self.counts:
            asyncio.get_running_loop().call_later(self.every_s, self.flush)
        self.counts[reason] += 1

    def flush(self) -> None:
        if self.counts:
            reasons = ", ".join(f"{reason} {count}" for reason, count in self.counts.most_common())
            total = sum(self.counts.values())
            self.logger.warning("%s %d requests in the last %g s: %s", self.what, total, self.every_s, reasons)
            self.counts.clear()
