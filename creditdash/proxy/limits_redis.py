"""Per-key limits shared by every gateway process through Redis (see limits.py).

Requests per minute: an exact sliding window. Each key has a sorted set of its admitted
requests scored by their time in ms; one Lua script trims what left the window, counts, and adds
the new request only when it fits, in one round trip, so two processes can never both take the
last slot. The set expires one window after its newest request. A refusal answers with the ms
until the oldest member leaves the window (the Retry-After).

Concurrency: leases. Each request in flight holds a member of the key's lease set scored by the
moment it expires; only unexpired leases count. This process renews the leases it holds every
third of their lifetime, so long requests and streams keep their slot, and removes a lease when
its request ends. A process that dies without saying so (SIGKILL, a lost host) stops renewing:
its slots come free when their leases expire, at most `CREDITDASH_LIMIT_LEASE_TTL_S` later.

Times come from the Redis server's clock (TIME inside the scripts), one clock for every process
and host. Tests may pass a clock of their own.

All calls are redis.asyncio (with the hiredis parser when it is installed): the event loop never
waits on a socket. When Redis fails (down, a timeout) the request is decided by a `KeyLimiter`
in this process instead, a warning is logged, and Redis is tried again after `RETRY_AFTER_S`:
limits fail open to per-process limits rather than refusing all traffic. A lease taken during
the outage is a local slot and is given back locally.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from creditdash.proxy.limits import WINDOW_S, KeyLimiter, seconds_until

log = logging.getLogger(__name__)

PREFIX = "creditdash:limits:"
# After a Redis failure, requests use the process's limiter this long before Redis is tried
# again, so an outage does not make every request wait for a connection timeout.
RETRY_AFTER_S = 5.0
REDIS_TIMEOUT_S = 1.0

# The time in ms: the caller's (ARGV[1] >= 0, tests) or the server's.
_NOW = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS[1] the key's window; ARGV: now ms, window ms, limit, member.
# Returns -1 when admitted, else the ms until the oldest counted request leaves the window.
RATE_SCRIPT = (
    _NOW
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""
)

# KEYS[1] the key's leases; ARGV: now ms, lease ttl ms, limit, member. 1 taken, 0 refused.
LEASE_SCRIPT = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
)

# KEYS[1] the key's leases; ARGV: now ms, lease ttl ms, members. Pushes back the expiry of
# the members still there (XX: a lease that already expired is not brought back, its slot may
# be someone else's now). Returns how many were renewed.
RENEW_SCRIPT = (
    _NOW
    + """
local ttl = tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return renewed
"""
)


def limits_client(url: str) -> Redis:
    """A client that fails fast: one attempt, a short timeout. A limit decided by the process
    is better than a request waiting out redis-py's default retries (seconds) on each call."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), retries=0),
    )


# A lease taken in this process's limiter while Redis was failing, or for a key without a limit.
_LOCAL = "local"
_UNLIMITED = "unlimited"


class RedisLimits:
    def __init__(
        self,
        client: Redis,
        *,
        lease_ttl_s: float = 30.0,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] | None = None,
        fallback: KeyLimiter | None = None,
    ) -> None:
        self.client = client
        self.lease_ttl_s = lease_ttl_s
        self.window_s = window_s
        # None: the Redis server's clock. Otherwise seconds (tests move it by hand).
        self.clock = clock
        self.fallback = fallback or KeyLimiter()
        self._rate = client.register_script(RATE_SCRIPT)
        self._lease = client.register_script(LEASE_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        # A member is unique across processes: a random process token and a counter.
        self._token = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._counter = itertools.count()
        # The slots this process holds, per key: lease members, or _LOCAL / _UNLIMITED.
        self._held: dict[str, list[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, lease_ttl_s: float) -> RedisLimits:
        return cls(limits_client(url), lease_ttl_s=lease_ttl_s)

    # ------------------------------------------------------------------------- the requests

    async def rate_wait(self, key_id: str, rpm_limit: int | None) -> int | None:
        if rpm_limit is None:
            return None
        if self._redis_down():
            return self._local_rate_wait(key_id, rpm_limit)
        window_ms = int(self.window_s * 1000)
        args: list[int | str] = [self._now_ms(), window_ms, rpm_limit, self._member()]
        try:
            wait_ms = int(await self._rate(keys=[f"{PREFIX}rpm:{key_id}"], args=args))
        except Exception as exc:  # any Redis failure: this process decides alone for a while
            self._failed("rate limit", exc)
            return self._local_rate_wait(key_id, rpm_limit)
        if wait_ms < 0:
            return None
        return seconds_until(wait_ms / 1000, 0.0)

    async def enter(self, key_id: str, concurrency_limit: int | None) -> bool:
        if concurrency_limit is None:
            self._held.setdefault(key_id, []).append(_UNLIMITED)
            return True
        if self._redis_down():
            return self._local_enter(key_id, concurrency_limit)
        member = self._member()
        ttl_ms = int(self.lease_ttl_s * 1000)
        args: list[int | str] = [self._now_ms(), ttl_ms, concurrency_limit, member]
        try:
            taken = int(await self._lease(keys=[self._lease_key(key_id)], args=args))
        except Exception as exc:
            self._failed("concurrency limit", exc)
            return self._local_enter(key_id, concurrency_limit)
        if not taken:
            return False
        self._held.setdefault(key_id, []).append(member)
        self._start_renewer()
        return True

    def leave(self, key_id: str) -> None:
        held = self._held.get(key_id)
        if not held:
            return
        member = held.pop()
        if not held:
            del self._held[key_id]
        if member == _LOCAL:
            self.fallback.leave(key_id)
        elif member != _UNLIMITED:
            self._spawn(self._remove(key_id, member))

    async def aclose(self) -> None:
        """Stop renewing, give back the leases this process still holds, close the client."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        held, self._held = self._held, {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key_id, members in held.items():
                    leases = [m for m in members if m not in (_LOCAL, _UNLIMITED)]
                    if leases:
                        pipe.zrem(self._lease_key(key_id), *leases)
                await pipe.execute()
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
        except Exception as exc:  # they expire on their own
            log.warning("could not give back concurrency leases (%s); they expire", exc)
        finally:
            await self.client.aclose()

    # ------------------------------------------------------------------------------ leases

    async def renew_once(self) -> int:
        """Push back the expiry of every lease this process holds; how many were renewed."""
        held = {
            key_id: [m for m in members if m not in (_LOCAL, _UNLIMITED)]
            for key_id, members in self._held.items()
        }
        held = {key_id: leases for key_id, leases in held.items() if leases}
        if not held:
            return 0
        ttl_ms = int(self.lease_ttl_s * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            for key_id, leases in held.items():
                await self._renew(
                    keys=[self._lease_key(key_id)], args=[self._now_ms(), ttl_ms, *leases],
                    client=pipe,
                )  # fmt: skip
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def _renew_forever(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                await self.renew_once()
            except Exception as exc:  # the next round tries again; leases may expire meanwhile
                log.warning("could not renew concurrency leases in Redis (%s)", exc)

    def _start_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _remove(self, key_id: str, member: str) -> None:
        try:
            await self.client.zrem(self._lease_key(key_id), member)
        except Exception as exc:  # the lease expires after its TTL instead
            log.warning("could not give back a concurrency lease in Redis (%s)", exc)

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (a thread): the lease expires after its TTL
            coroutine.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------------------------- failures

    def _redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        log.warning(
            "Redis failed for the %s (%s: %s); limits are per process for %.0f s",
            what, type(exc).__name__, exc, RETRY_AFTER_S,
        )  # fmt: skip
        self._down_until = time.monotonic() + RETRY_AFTER_S

    def _local_rate_wait(self, key_id: str, rpm_limit: int) -> int | None:
        if self.fallback.allow_request(key_id, rpm_limit):
            return None
        return self.fallback.retry_after_s(key_id)

    def _local_enter(self, key_id: str, concurrency_limit: int) -> bool:
        if not self.fallback.enter(key_id, concurrency_limit):
            return False
        self._held.setdefault(key_id, []).append(_LOCAL)
        return True

    # ----------------------------------------------------------------------------- helpers

    def _now_ms(self) -> int:
        return -1 if self.clock is None else int(self.clock() * 1000)

    def _member(self) -> str:
        return f"{self._token}-{next(self._counter)}"

    @staticmethod
    def _lease_key(key_id: str) -> str:
        return f"{PREFIX}lease:{key_id}"
