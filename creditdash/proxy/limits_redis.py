"""Per-key limits shared by every gateway process through Redis (see limits.py).

One Lua script admits a request in one round trip: it checks and counts the key's requests per
minute, then takes one of its concurrency slots. Scripts run atomically, so two processes can
never both take the last slot of either.

Requests per minute: an exact sliding window. Each key has a sorted set of its admitted
requests scored by their time in ms; the script trims what left the window, counts, and adds
the new request only when it fits. The set expires one window after its newest request. A
refusal answers with the ms until the oldest member leaves the window (the Retry-After).

Concurrency: leases. Each request in flight holds a member of the key's lease set scored by the
moment it expires; only unexpired leases count. This process renews the leases it holds every
third of their lifetime, so long requests and streams keep their slot, and removes a lease when
its request ends (in the background: the answer does not wait for it). A process that dies
without saying so (SIGKILL, a lost host) stops renewing: its slots come free when their leases
expire, at most `CREDITDASH_LIMIT_LEASE_TTL_S` later.

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
from typing import TYPE_CHECKING, Any

from creditdash.core.settings import Settings
from creditdash.proxy.limits import (
    CONCURRENCY_REFUSAL,
    WINDOW_S,
    KeyLimiter,
    Limits,
    LocalLimits,
    Refusal,
    admit_locally,
    seconds_until,
)

if TYPE_CHECKING:  # redis is imported only when a Redis URL is configured
    from redis.asyncio import Redis

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

# KEYS[1] the key's window, KEYS[2] its leases; ARGV: now ms, window ms, requests-per-minute
# limit (-1: none), lease ttl ms, concurrency limit (-1: none), member. Returns -1 when admitted
# (the request counted, its lease taken), -2 when the key has its limit in flight, else (the
# minute is full) the ms until the oldest counted request leaves the window.
ADMIT_SCRIPT = (
    _NOW
    + """
local member = ARGV[6]
local rpm = tonumber(ARGV[3])
if rpm >= 0 then
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(0, tonumber(oldest[2]) + window - now)
  end
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], window)
end
local concurrency = tonumber(ARGV[5])
if concurrency >= 0 then
  local ttl = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= concurrency then
    return -2
  end
  redis.call('ZADD', KEYS[2], now + ttl, member)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return -1
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


def key_limits(settings: Settings) -> Limits:
    """The process's limits backend: shared through Redis when a Redis URL is configured, else
    this process's memory."""
    if not settings.redis_url:
        return LocalLimits()
    return RedisLimits.from_url(settings.redis_url, lease_ttl_s=settings.limit_lease_ttl_s)


def limits_client(url: str) -> Redis:
    """A client that fails fast: one attempt, a short timeout. A limit decided by the process
    is better than a request waiting out redis-py's default retries (seconds) on each call."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

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
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        # A member is unique across processes: a random process token and a counter.
        self._token = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._counter = itertools.count()
        # The slots this process holds, per key: lease members, or _LOCAL / _UNLIMITED.
        self._held: dict[str, list[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._to_remove: list[tuple[str, str]] = []
        self._remover: asyncio.Task[Any] | None = None
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, lease_ttl_s: float) -> RedisLimits:
        return cls(limits_client(url), lease_ttl_s=lease_ttl_s)

    # ------------------------------------------------------------------------- the requests

    async def admit(
        self, key_id: str, rpm_limit: int | None, concurrency_limit: int | None
    ) -> Refusal | None:
        if rpm_limit is None and concurrency_limit is None:
            self._held.setdefault(key_id, []).append(_UNLIMITED)
            return None
        if self._redis_down():
            return self._admit_locally(key_id, rpm_limit, concurrency_limit)
        member = self._member()
        args: list[int | str] = [
            self._now_ms(), int(self.window_s * 1000), -1 if rpm_limit is None else rpm_limit,
            int(self.lease_ttl_s * 1000), -1 if concurrency_limit is None else concurrency_limit,
            member,
        ]  # fmt: skip
        try:
            answer = int(await self._admit(keys=self._keys(key_id), args=args))
        except Exception as exc:  # any Redis failure: this process decides alone for a while
            self._failed(exc)
            return self._admit_locally(key_id, rpm_limit, concurrency_limit)
        if answer == -2:
            return CONCURRENCY_REFUSAL
        if answer >= 0:
            return Refusal(rate=True, retry_after_s=seconds_until(answer / 1000, 0.0))
        if concurrency_limit is None:
            self._held.setdefault(key_id, []).append(_UNLIMITED)
        else:
            self._held.setdefault(key_id, []).append(member)
            self._start_renewer()
        return None

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
            # Leases given back while a removal is on its way go together in the next one.
            self._to_remove.append((key_id, member))
            if self._remover is None or self._remover.done():
                self._remover = self._spawn(self._remove_pending())

    async def aclose(self) -> None:
        """Stop renewing, give back the leases this process still holds, close the client."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        held, self._held = self._held, {}
        try:
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            for key_id, members in held.items():
                self._to_remove += [(key_id, m) for m in members if m not in (_LOCAL, _UNLIMITED)]
            await self._remove_pending()
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

    async def _remove_pending(self) -> None:
        """Remove the leases given back, one round trip for all that are waiting."""
        while self._to_remove:
            batch, self._to_remove = self._to_remove, []
            try:
                if len(batch) == 1:
                    await self.client.zrem(self._lease_key(batch[0][0]), batch[0][1])
                    continue
                async with self.client.pipeline(transaction=False) as pipe:
                    for key_id, member in batch:
                        pipe.zrem(self._lease_key(key_id), member)
                    await pipe.execute()
            except Exception as exc:  # the leases expire after their TTL instead
                log.warning("could not give back %d concurrency leases (%s)", len(batch), exc)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any] | None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (a thread): the next removal or the TTL frees them
            coroutine.close()
            return None
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---------------------------------------------------------------------------- failures

    def _redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, exc: Exception) -> None:
        log.warning(
            "Redis failed for the key limits (%s: %s); they are per process for %g s",
            type(exc).__name__, exc, RETRY_AFTER_S,
        )  # fmt: skip
        self._down_until = time.monotonic() + RETRY_AFTER_S

    def _admit_locally(
        self, key_id: str, rpm_limit: int | None, concurrency_limit: int | None
    ) -> Refusal | None:
        refused = admit_locally(self.fallback, key_id, rpm_limit, concurrency_limit)
        if refused is None:  # the fallback counted the slot: it is given back there
            self._held.setdefault(key_id, []).append(_LOCAL)
        return refused

    # ----------------------------------------------------------------------------- helpers

    def _now_ms(self) -> int:
        return -1 if self.clock is None else int(self.clock() * 1000)

    def _member(self) -> str:
        return f"{self._token}-{next(self._counter)}"

    @staticmethod
    def _keys(key_id: str) -> list[str]:
        """The key's window and its leases. The braces put both in one Redis Cluster slot,
        which a script that uses two keys needs."""
        return [f"{PREFIX}{{{key_id}}}:rpm", f"{PREFIX}{{{key_id}}}:leases"]

    @classmethod
    def _lease_key(cls, key_id: str) -> str:
        return cls._keys(key_id)[1]
