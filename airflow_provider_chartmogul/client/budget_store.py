"""The account-wide budget's state on Redis: one server-side script per step, so every decision is
atomic across processes and timed by Redis's own clock (``TIME``), whatever the workers' clocks say.

Why a script of our own: no library takes a send slot and a connection lease in one atomic step
with fair shares between tasks (``limits`` and ``pyrate-limiter`` count requests in a window;
redis-py's ``Lock`` is one mutex); taking them in two steps would hold a lease while waiting for
the rate. The rules are in docs/shared-budget.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Every key of one budget shares the hash tag ``{name}``, so a Redis Cluster keeps them together.
KEY_PREFIX = "chartmogul:budget:"

# ARGV: task, lease id, sends per window, window (us), connections, lease ttl (us), presence ttl
# (us), waiting ttl (us), key ttl (ms), now (us; empty: Redis's clock), then the task's leases
# released since its last call. KEYS: sends, leases, tasks, waiting; a task's own sends and leases
# live under KEYS[1] / KEYS[2] .. ':' .. task.
ACQUIRE = """
local now = tonumber(ARGV[10])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local task, lease = ARGV[1], ARGV[2]
local per_window, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local connections, lease_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local presence_ttl, waiting_ttl, keep = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local sends, leases, tasks, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
for i = 11, #ARGV do
  redis.call('ZREM', leases, ARGV[i])
  redis.call('ZREM', leases .. ':' .. task, ARGV[i])
end

for _, gone in ipairs(redis.call('ZRANGEBYSCORE', tasks, '-inf', now)) do
  redis.call('DEL', sends .. ':' .. gone, leases .. ':' .. gone)
end
redis.call('ZREMRANGEBYSCORE', tasks, '-inf', now)
redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
redis.call('ZADD', tasks, now + presence_ttl, task)

local active = redis.call('ZRANGE', tasks, 0, -1)
local rate_share, lease_share = per_window / #active, connections / #active
local mine_sent, mine_held, owed = 0, 0, 0
for _, other in ipairs(active) do
  local own_sends, own_leases = sends .. ':' .. other, leases .. ':' .. other
  redis.call('ZREMRANGEBYSCORE', own_sends, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', own_leases, '-inf', now)
  local sent, held = redis.call('ZCARD', own_sends), redis.call('ZCARD', own_leases)
  if other == task then
    mine_sent, mine_held = sent, held
  elseif sent < rate_share and held < lease_share and redis.call('ZSCORE', waiting, other) then
    owed = owed + 1
  end
end

local used, held = redis.call('ZCARD', sends), redis.call('ZCARD', leases)
local free_rate, free_leases = per_window - used, connections - held
-- Sends are spaced (one per interval, account-wide): each free slot comes alone, so the shares
-- decide who takes it, and the window never fills in a burst that the next second repeats. The
-- pace is a tenth faster than the window allows, so a task alone is paced by its own limiter only.
local pace = sends .. ':pace'
local interval = math.floor(0.9 * window / per_window)
local due = tonumber(redis.call('GET', pace) or '0')
-- Within its share a task takes any free slot; beyond it, a send slot only while no task waits
-- below both its shares (each of those is owed the next one), and a connection only if more are
-- free than such tasks wait.
local rate_ok = now >= due and free_rate > 0 and (mine_sent < rate_share or owed == 0)
local lease_ok = free_leases > 0 and (mine_held < lease_share or free_leases > owed)

local wait = 0
if rate_ok and lease_ok then
  redis.call('ZADD', sends, now, lease)
  redis.call('ZADD', sends .. ':' .. task, now, lease)
  redis.call('ZADD', leases, now + lease_ttl, lease)
  redis.call('ZADD', leases .. ':' .. task, now + lease_ttl, lease)
  redis.call('ZREM', waiting, task)
  -- A send that comes a little late does not push the next ones back (5 ms at most).
  local late = math.min(math.floor(interval / 2), 5000)
  redis.call('SET', pace, math.max(due, now - late) + interval, 'PX', keep)
else
  redis.call('ZADD', waiting, now + waiting_ttl, task)
  if not rate_ok then
    if now < due then
      wait = due - now
    elseif mine_sent >= rate_share then
      -- At its share: nothing for it until its own oldest send leaves the window.
      local oldest = redis.call('ZRANGE', sends .. ':' .. task, 0, 0, 'WITHSCORES')
      wait = oldest[2] and (tonumber(oldest[2]) + window - now) or interval
    elseif free_rate <= 0 then
      -- Until the oldest send in the window leaves it.
      local oldest = redis.call('ZRANGE', sends, 0, 0, 'WITHSCORES')
      wait = oldest[2] and (tonumber(oldest[2]) + window - now) or interval
    else
      wait = interval  -- the next slot may be owed to a task below its share
    end
    wait = math.max(1, wait)
  end
end
for _, key in ipairs({sends, leases, tasks, waiting, sends .. ':' .. task, leases .. ':' .. task}) do
  redis.call('PEXPIRE', key, keep)
end
return {(rate_ok and lease_ok) and 1 or 0, wait, #active, used, held, now}
"""

# ARGV: task, presence ttl (us), lease ttl (us), key ttl (ms), now (us or empty), lease ids...
RENEW = """
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local task, presence_ttl, lease_ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local leases, tasks = KEYS[1], KEYS[2]
redis.call('ZADD', tasks, now + presence_ttl, task)
local kept = 0
for i = 6, #ARGV do
  kept = kept + redis.call('ZADD', leases, 'XX', 'CH', now + lease_ttl, ARGV[i])
  redis.call('ZADD', leases .. ':' .. task, 'XX', now + lease_ttl, ARGV[i])
end
for _, key in ipairs({leases, tasks, leases .. ':' .. task, KEYS[3] .. ':' .. task}) do
  redis.call('PEXPIRE', key, keep)
end
return kept
"""

# ARGV: task, lease ids... KEYS: leases.
RELEASE = """
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[1] .. ':' .. ARGV[1], ARGV[i])
end
return 1
"""

# ARGV: task, lease ids... KEYS: leases, tasks, waiting, sends. The task's sends stay in the
# window: they were sent.
LEAVE = """
local task = ARGV[1]
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREM', KEYS[2], task)
redis.call('ZREM', KEYS[3], task)
redis.call('DEL', KEYS[1] .. ':' .. task, KEYS[4] .. ':' .. task)
return 1
"""


@dataclass(frozen=True)
class Decision:
    """One answer of the acquire script.

    :param admitted: a send slot and a connection lease were taken.
    :param wait: when not admitted for the rate, seconds until a send slot may free up; 0 when
        only a connection is missing (leases come back when answers do: poll).
    :param active: tasks present on the budget, this one included.
    :param sent: sends in the window before this one.
    :param held: leases held before this one.
    :param at: when the store decided, in seconds of its clock (Redis's ``TIME``).
    """

    admitted: bool
    wait: float
    active: int
    sent: int
    held: int
    at: float


@dataclass(frozen=True)
class Timings:
    """How long the budget's records live, in seconds (Redis's clock)."""

    window: float = 1.01  # a send counts for a second, and 10 ms for its way to ChartMogul
    lease_ttl: float = 6.0  # renewed every second while held; a killed worker's leases go after it
    presence_ttl: float = 5.0  # a task counts for fair shares until this long after it was last seen
    waiting_ttl: float = 0.3  # a task waiting for a slot is owed one until this long after asking
    key_ttl: float = 120.0  # an unused budget leaves Redis


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class RedisBudgetStore:
    """One budget's keys on a Redis server, reached through a redis-py client passed in.

    Every method raises the client's errors (``redis.RedisError``, ``OSError``) unchanged: the
    caller decides what a Redis that fails means.

    :param client: a ``redis.Redis`` (or anything with its ``register_script``).
    :param name: the budget's name (never the API key; see ``shared_budget.budget_name``).
    :param timings: how long records live; ``now`` arguments (seconds) replace Redis's clock in tests.
    """

    def __init__(self, client: Any, name: str, *, timings: Timings | None = None) -> None:
        self.client = client
        self.name = name
        self.timings = timings or Timings()
        base = f"{KEY_PREFIX}{{{name}}}:"
        self.sends, self.leases, self.tasks, self.waiting = (
            base + part for part in ("sends", "leases", "tasks", "waiting")
        )
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._leave = client.register_script(LEAVE)

    def acquire(
        self,
        task: str,
        lease: str,
        *,
        per_window: int,
        connections: int,
        released: Sequence[str] = (),
        now: float | None = None,
    ) -> Decision:
        """Take a send slot and a connection lease for ``task``, or learn why not; ``released``
        leases of the task are given back first (in the same call)."""
        t = self.timings
        args = [
            task,
            lease,
            per_window,
            _micros(t.window),
            connections,
            _micros(t.lease_ttl),
            _micros(t.presence_ttl),
            _micros(t.waiting_ttl),
            _micros(t.key_ttl) // 1000,
            "" if now is None else _micros(now),
            *released,
        ]
        admitted, wait, active, sent, held, at = self._acquire(
            keys=[self.sends, self.leases, self.tasks, self.waiting], args=args
        )
        return Decision(
            bool(admitted), int(wait) / 1_000_000, int(active), int(sent), int(held), int(at) / 1_000_000
        )

    def renew(self, task: str, leases: Sequence[str], *, now: float | None = None) -> int:
        """Keep ``task`` present and its ``leases`` held; how many of them were still held."""
        t = self.timings
        args = [
            task,
            _micros(t.presence_ttl),
            _micros(t.lease_ttl),
            _micros(t.key_ttl) // 1000,
            "" if now is None else _micros(now),
            *leases,
        ]
        return int(self._renew(keys=[self.leases, self.tasks, self.sends], args=args))

    def release(self, task: str, leases: Sequence[str]) -> None:
        """The leases' requests are over."""
        self._release(keys=[self.leases], args=[task, *leases])

    def leave(self, task: str, leases: Sequence[str] = ()) -> None:
        """``task`` is done: its leases and its place in the fair shares go at once."""
        self._leave(keys=[self.leases, self.tasks, self.waiting, self.sends], args=[task, *leases])
