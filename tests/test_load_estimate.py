"""service.load: Little's law on the rate measured while busy (a fake clock, no server)."""

from __future__ import annotations

import types

import pytest

from service import load


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(load, "time", types.SimpleNamespace(monotonic=fake))  # this module's clock only
    return fake


def serve(meter: load.Load, clock: Clock, requests: int, every_s: float, concurrent: int) -> None:
    """``concurrent`` requests kept in flight, one answered every ``every_s`` seconds."""
    for _ in range(concurrent - meter.in_flight):
        meter.admitted()
    for _ in range(requests):
        clock.now += every_s
        meter.answered()
        meter.admitted()


def test_no_estimate_before_enough_busy_time(clock: Clock) -> None:
    meter = load.Load()
    assert meter.expected_s() is None
    serve(meter, clock, requests=3, every_s=0.01, concurrent=4)
    assert meter.rate() is None  # 30 ms of busy time says nothing yet


def test_time_in_flight_is_in_flight_over_rate(clock: Clock) -> None:
    meter = load.Load()
    serve(meter, clock, requests=200, every_s=0.02, concurrent=10)  # 50 answers per second
    assert meter.rate() == pytest.approx(50, rel=0.05)
    assert meter.expected_s() == pytest.approx((10 + 1) / 50, rel=0.05)


def test_idle_time_does_not_lower_the_rate(clock: Clock) -> None:
    meter = load.Load()
    serve(meter, clock, requests=100, every_s=0.02, concurrent=1)
    meter.answered()  # now idle
    clock.now += 1.0
    meter.admitted()
    serve(meter, clock, requests=50, every_s=0.02, concurrent=1)
    assert meter.rate() == pytest.approx(50, rel=0.05)


def test_the_rate_follows_the_last_window(clock: Clock) -> None:
    meter = load.Load()
    serve(meter, clock, requests=400, every_s=0.01, concurrent=8)  # 100/s
    serve(meter, clock, requests=int(load.WINDOW_S / 0.04) + 8, every_s=0.04, concurrent=8)  # then 25/s
    # 108 answers in the last WINDOW_S: the window stretches back towards MIN_ANSWERS, into the 100/s
    assert 25 < meter.rate() < 100  # type: ignore[operator]
    serve(meter, clock, requests=load.MIN_ANSWERS, every_s=0.04, concurrent=8)
    assert meter.rate() == pytest.approx(25, rel=0.1)


def test_a_slow_rate_is_measured_over_enough_answers(clock: Clock) -> None:
    """A batch of 32 answered every 1.5 s: 4 s holds 2 or 3 batches, so the rate swung by a batch."""
    meter = load.Load()
    rates = []
    for _ in range(30):
        for _ in range(32 + 32 - meter.in_flight):
            meter.admitted()
        clock.now += 1.2
        for _ in range(32):
            meter.answered()
        clock.now += 0.3  # part way into the next batch (busy: requests are in flight)
        rates.append(meter.rate())
    assert all(rate == pytest.approx(32 / 1.5, rel=0.1) for rate in rates[-10:]), rates[-10:]


def test_the_tail_factor_is_learned_from_the_admitted_requests() -> None:
    tail = load.TailFactor()
    for _ in range(load.TAIL_MIN_SAMPLES - 1):
        tail.observe(estimated_s=1.0, took_s=2.0)
    assert tail.factor == load.TAIL_DEFAULT  # not enough answers yet
    for index in range(load.TAIL_SAMPLES + load.TAIL_UPDATE_EVERY):
        tail.observe(estimated_s=1.0, took_s=1.0 + (0.5 if index % 50 == 0 else 0.1))  # a 2% tail of 1.5x
    assert tail.factor == pytest.approx(1.5)
    for _ in range(load.TAIL_SAMPLES + load.TAIL_UPDATE_EVERY):
        tail.observe(estimated_s=1.0, took_s=0.5)  # faster than estimated: never below the estimate itself
    assert tail.factor == 1.0
