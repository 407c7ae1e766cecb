"""This worker's load: API requests in flight, how fast it answers them, and so how long a new one would take.

The estimate is Little's law, W = L / lambda: L the requests in flight, lambda the rate at which this
worker has answered requests over the last few seconds *while it had any in flight* (idle time
would make a burst after a quiet minute look slow). It needs no model of batching or decoding: the
measured rate already contains them, and it follows the machine as its capacity changes (precision,
image sizes, a GPU shared with another process). Measured at low concurrency the rate undersells what
batching achieves at high concurrency, so admission never sheds below one full batch in flight, and
the limit rises with the rate within a window or two.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

BIN_S = 0.25  # resolution of the rate
# The rate is measured over the last WINDOW_S, stretched back (up to MAX_WINDOW_S) until it holds
# MIN_ANSWERS answers: answers come a batch at a time, so a window of few batches misjudges the rate by up
# to a batch either way. 4 s holds thousands of answers on a GPU; on a 2-core AVX2 CPU, where a batch of
# 32 takes 1.2 s, it held ~3 batches, and the admitted p99 went over the target (docs/reliability.md).
WINDOW_S = 4.0
MIN_ANSWERS = 320  # 10 batches of the default 32
MAX_WINDOW_S = 20.0
MIN_BUSY_S = 0.5  # less busy time than this in the window: no estimate yet

# The tail factor (:class:`TailFactor`): its start value (p99/median of the admitted requests at 8x on 2
# cores), and the last requests it is learned from, once there are enough.
TAIL_DEFAULT = 1.3
TAIL_QUANTILE = 0.99
TAIL_SAMPLES = 256
TAIL_MIN_SAMPLES = 64
TAIL_UPDATE_EVERY = 16


@dataclass
class _Bin:
    busy_s: float = 0.0
    answered: int = 0


@dataclass
class Load:
    in_flight: int = 0
    _bins: collections.OrderedDict[int, _Bin] = field(default_factory=collections.OrderedDict)
    _last: float = field(default_factory=time.monotonic)

    def admitted(self) -> None:
        self._advance(time.monotonic())
        self.in_flight += 1

    def answered(self) -> None:
        now = time.monotonic()
        self._advance(now)
        self.in_flight -= 1
        self._bin(int(now / BIN_S)).answered += 1

    def rate(self) -> float | None:
        """Requests answered per busy second over the last :data:`WINDOW_S` (or :data:`MIN_ANSWERS`,
        see there); None until measured."""
        now = time.monotonic()
        self._advance(now)
        newest_first = reversed(self._bins.items())
        window_start, oldest = int((now - WINDOW_S) / BIN_S), int((now - MAX_WINDOW_S) / BIN_S)
        busy, answered = 0.0, 0
        for index, b in newest_first:
            if index <= oldest or (index <= window_start and answered >= MIN_ANSWERS):
                break
            busy += b.busy_s
            answered += b.answered
        if busy < MIN_BUSY_S:
            return None
        return answered / busy

    def expected_s(self) -> float | None:
        """How long a request admitted now would take to be answered; None until the rate is measured."""
        rate = self.rate()
        return None if not rate else (self.in_flight + 1) / rate

    def _advance(self, now: float) -> None:
        """Credit the time since the last event as busy when requests were in flight then."""
        if self.in_flight > 0:
            start = max(self._last, now - MAX_WINDOW_S - BIN_S)  # older time no longer counts
            for index in range(int(start / BIN_S), int(now / BIN_S) + 1):  # split over the bins
                seconds = min(now, (index + 1) * BIN_S) - max(start, index * BIN_S)
                if seconds > 0:
                    self._bin(index).busy_s += seconds
        self._last = now

    def _bin(self, index: int) -> _Bin:
        current = self._bins.get(index)
        if current is None:
            current = self._bins[index] = _Bin()
            while len(self._bins) > int(MAX_WINDOW_S / BIN_S) + 2:
                self._bins.popitem(last=False)
        return current


@dataclass
class TailFactor:
    """How much longer than estimated the requests admitted under load took, at the p99: what admission
    multiplies the estimate by. Learned, because it depends on the machine and on the load itself: on 2
    cores it was 1.26 at 8x overload and 1.49 at 16x (the sheds and the clients share the cores with
    inference), so a constant either sheds too much or lets the p99 over the target."""

    _ratios: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=TAIL_SAMPLES))
    factor: float = TAIL_DEFAULT
    _new: int = 0

    def observe(self, estimated_s: float, took_s: float) -> None:
        """A request admitted with estimate ``estimated_s`` was answered after ``took_s``."""
        self._ratios.append(took_s / estimated_s)
        self._new += 1
        if len(self._ratios) >= TAIL_MIN_SAMPLES and self._new >= TAIL_UPDATE_EVERY:
            ordered = sorted(self._ratios)
            self.factor = max(1.0, ordered[round(TAIL_QUANTILE * (len(ordered) - 1))])
            self._new = 0


LOAD = Load()  # this worker process's
