"""The token bucket behind the per-API-key rate limit, on a clock the test moves."""

from __future__ import annotations

import pytest

from ebl.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_spends_its_burst_then_waits_for_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 1  # a token every half second: the next one within a second
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("a") == 1


def test_slow_rates_ask_for_a_longer_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.1, burst=1, clock=clock)
    assert limiter.take("a") == 0
    assert limiter.take("a") == 10
    clock.now += 4
    assert limiter.take("a") == 6


def test_clients_have_their_own_buckets_and_savings_are_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 1]
    assert limiter.take("b") == 0
    clock.now += 3600  # an hour idle still saves only the burst
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 1]


def test_forgotten_clients_start_again_with_a_full_bucket() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock(), max_clients=2)
    assert limiter.take("a") == 0
    assert limiter.take("b") == 0
    assert limiter.take("c") == 0  # "a" is forgotten
    assert limiter.take("a") == 0
    assert limiter.take("c") == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_limit_that_would_refuse_everything_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        RateLimiter(rate=rate, burst=burst, clock=Clock())
