from staybook.kernel.ratelimit import MemoryRateLimiter, RateLimitRule, sliding_window


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_allows_up_to_the_limit_then_refuses_with_retry_after():
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    rule = RateLimitRule("login", limit=5, window_seconds=60)
    decisions = [await limiter.hit(rule, "1.2.3.4") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[4].remaining == 0
    assert 0 < decisions[5].retry_after_seconds <= 60
    assert (await limiter.hit(rule, "5.6.7.8")).allowed, "other clients are not affected"


async def test_block_period_outlasts_the_window():
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    rule = RateLimitRule("ip", limit=2, window_seconds=10, block_seconds=600)
    for _ in range(2):
        assert (await limiter.hit(rule, "c")).allowed
    refused = await limiter.hit(rule, "c")
    assert not refused.allowed and refused.retry_after_seconds == 600
    clock.now += 30
    still = await limiter.hit(rule, "c")
    assert not still.allowed and 560 <= still.retry_after_seconds <= 570
    clock.now += 600
    assert (await limiter.hit(rule, "c")).allowed


async def test_window_slides_instead_of_resetting_at_the_edge():
    clock = Clock(now=1_000_000.0 - 1_000_000.0 % 60)  # start of a window
    limiter = MemoryRateLimiter(clock)
    rule = RateLimitRule("api", limit=10, window_seconds=60)
    clock.now += 50
    for _ in range(10):
        assert (await limiter.hit(rule, "c")).allowed
    clock.now += 15  # 5 s into the next window: the previous window still weighs 55/60
    assert not (await limiter.hit(rule, "c")).allowed
    clock.now += 50  # 55 s in: weight 5/60 of 10 = 0.8 used
    assert (await limiter.hit(rule, "c")).allowed


def test_sliding_window_retry_after_is_when_the_estimate_fits():
    allowed, remaining, retry_ms = sliding_window(10, 60_000, 60_000 + 3_000, previous=10, current=0, cost=1)
    assert not allowed and remaining == 0
    # previous * (60 - t)/60 + 1 <= 10  ->  t >= 6 s into the window; we are 3 s in.
    assert retry_ms == 3_000
    allowed, _, retry_ms = sliding_window(10, 60_000, 60_000, previous=0, current=10, cost=1)
    assert not allowed and retry_ms == 60_000
