"""Sliding-window rate limits with an optional block period, atomic on Redis (Lua), twin in memory.

The window is the weighted sum of the previous and current fixed windows (the
"sliding window counter"): O(1) memory per client, smooth at window edges.
When a rule has `block_seconds`, exceeding it blocks the client for that long.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RateLimitRule:
    name: str
    limit: int
    window_seconds: float
    block_seconds: float = 0.0
    # While the shared store is unreachable: count in this process (credential routes) instead of
    # allowing every request (kernel/fallback.py).
    fail_closed: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_seconds: int  # 0 when allowed


class RateLimiter(Protocol):
    kind: str

    async def hit(self, rule: RateLimitRule, client: str, cost: int = 1) -> Decision: ...

    async def reset(self, rule: RateLimitRule, client: str) -> None: ...


def sliding_window(
    limit: int, window_ms: int, now_ms: int, previous: int, current: int, cost: int
) -> tuple[bool, int, int]:
    """The decision both adapters share: (allowed, remaining, retry_after_ms)."""
    window_start = now_ms - now_ms % window_ms
    weight = (window_ms - (now_ms - window_start)) / window_ms
    estimated = previous * weight + current
    if estimated + cost <= limit:
        return True, int(limit - estimated - cost), 0
    if current + cost > limit or previous == 0:
        retry_ms = window_start + window_ms - now_ms
    else:
        # When does previous * weight(t) + current + cost fall to the limit?
        needed_weight = (limit - current - cost) / previous
        retry_ms = math.ceil(window_ms * (1 - needed_weight)) - (now_ms - window_start)
    return False, 0, max(1, retry_ms)


class MemoryRateLimiter:
    kind = "memory"

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self._counters: dict[tuple[str, str, int], int] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}

    async def hit(self, rule: RateLimitRule, client: str, cost: int = 1) -> Decision:
        now_ms = int(self.clock() * 1000)
        blocked_until = self._blocked_until.get((rule.name, client), 0)
        if blocked_until > now_ms:
            return Decision(False, 0, math.ceil((blocked_until - now_ms) / 1000))
        window_ms = int(rule.window_seconds * 1000)
        start = now_ms - now_ms % window_ms
        previous = self._counters.get((rule.name, client, start - window_ms), 0)
        current = self._counters.get((rule.name, client, start), 0)
        allowed, remaining, retry_ms = sliding_window(rule.limit, window_ms, now_ms, previous, current, cost)
        if allowed:
            self._counters[(rule.name, client, start)] = current + cost
            if len(self._counters) > 200_000:
                self._forget_before(start - window_ms)
            return Decision(True, remaining, 0)
        if rule.block_seconds > 0:
            block_ms = int(rule.block_seconds * 1000)
            self._blocked_until[(rule.name, client)] = now_ms + block_ms
            retry_ms = block_ms
        return Decision(False, 0, math.ceil(retry_ms / 1000))

    def _forget_before(self, oldest_start: int) -> None:
        self._counters = {k: v for k, v in self._counters.items() if k[2] >= oldest_start}

    async def reset(self, rule: RateLimitRule, client: str) -> None:
        self._blocked_until.pop((rule.name, client), None)
        for key in [k for k in self._counters if k[0] == rule.name and k[1] == client]:
            del self._counters[key]


# KEYS[1]: key prefix (with a {hash tag} so all keys of a client share a cluster slot)
# ARGV: limit, window_ms, block_ms, cost. Time comes from Redis so clients with skewed clocks agree.
_SLIDING_WINDOW_LUA = """
local prefix = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local block_ms = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('PTTL', prefix .. ':block')
if blocked > 0 then return {0, 0, blocked} end
local start = now - (now % window)
local cur_key = prefix .. ':' .. start
local previous = tonumber(redis.call('GET', prefix .. ':' .. (start - window)) or '0')
local current = tonumber(redis.call('GET', cur_key) or '0')
local weight = (window - (now - start)) / window
local estimated = previous * weight + current
if estimated + cost <= limit then
  redis.call('INCRBY', cur_key, cost)
  redis.call('PEXPIRE', cur_key, window * 2)
  return {1, math.floor(limit - estimated - cost), 0}
end
if block_ms > 0 then
  redis.call('SET', prefix .. ':block', '1', 'PX', block_ms)
  return {0, 0, block_ms}
end
local retry
if current + cost > limit or previous == 0 then
  retry = start + window - now
else
  retry = math.ceil(window * (1 - (limit - current - cost) / previous)) - (now - start)
end
if retry < 1 then retry = 1 end
return {0, 0, retry}
"""


class RedisRateLimiter:
    kind = "redis"

    def __init__(self, client, prefix: str = "staybook:rl:") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW_LUA)

    def _key(self, rule: RateLimitRule, client: str) -> str:
        return f"{self.prefix}{{{rule.name}:{client}}}"

    async def hit(self, rule: RateLimitRule, client: str, cost: int = 1) -> Decision:
        allowed, remaining, retry_ms = await self._script(
            keys=[self._key(rule, client)],
            args=[rule.limit, int(rule.window_seconds * 1000), int(rule.block_seconds * 1000), cost],
        )
        return Decision(bool(allowed), int(remaining), math.ceil(int(retry_ms) / 1000) if not allowed else 0)

    async def reset(self, rule: RateLimitRule, client: str) -> None:
        key = self._key(rule, client)
        keys = [k async for k in self.client.scan_iter(match=key.replace("{", "\\{").replace("}", "\\}") + ":*")]
        if keys:
            await self.client.delete(*keys)
