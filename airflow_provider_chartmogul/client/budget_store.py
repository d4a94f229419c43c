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

# ARGV: 1 task, 2 id prefix, 3 sends per window, 4 window (us, the slack included), 5 connections,
# 6 lease ttl (us), 7 presence ttl (us), 8 waiting ttl (us), 9 key ttl (ms), 10 now (us; empty:
# Redis's clock), 11 send slots wanted, 12 leases wanted, 13 '1' when the task holds a slot
# already, 14 '1' when it holds an idle lease, 15 horizon (us), 16 spacing (us) the task asks its
# slots to keep, 17 n: how many released leases follow, then the n leases, then the unused slots
# given back. KEYS: sends, leases, tasks, waiting; a task's own sends and leases live under
# KEYS[1] / KEYS[2] .. ':' .. task.
ACQUIRE = """
local now = tonumber(ARGV[10])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local task, prefix = ARGV[1], ARGV[2]
local per_window, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local connections, lease_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local presence_ttl, waiting_ttl, keep = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local want_slots, want_leases = tonumber(ARGV[11]), tonumber(ARGV[12])
local has_slot, has_lease = ARGV[13] == '1', ARGV[14] == '1'
local horizon, spacing = tonumber(ARGV[15]), tonumber(ARGV[16])
local sends, leases, tasks, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local my_sends, my_leases = sends .. ':' .. task, leases .. ':' .. task
local released = tonumber(ARGV[17])
for i = 18, 17 + released do
  redis.call('ZREM', leases, ARGV[i])
  redis.call('ZREM', my_leases, ARGV[i])
end
for i = 18 + released, #ARGV do
  redis.call('ZREM', sends, ARGV[i])
  redis.call('ZREM', my_sends, ARGV[i])
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
local mine_sent, mine_held, owed, others_waiting = 0, 0, 0, 0
for _, other in ipairs(active) do
  local own_sends, own_leases = sends .. ':' .. other, leases .. ':' .. other
  redis.call('ZREMRANGEBYSCORE', own_sends, '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', own_leases, '-inf', now)
  local sent, held = redis.call('ZCARD', own_sends), redis.call('ZCARD', own_leases)
  if other == task then
    mine_sent, mine_held = sent, held
  elseif redis.call('ZSCORE', waiting, other) then
    others_waiting = others_waiting + 1
    if sent < rate_share and held < lease_share then owed = owed + 1 end
  end
end

local used, held = redis.call('ZCARD', sends), redis.call('ZCARD', leases)
local free_leases = connections - held
-- A send slot is a moment on Redis's clock; the task sends in it or not at all (it gives back a
-- slot it missed). The window counts every slot within one window before the new one, wherever
-- it lies, so no window of this length ever holds more than per_window of them.
local function count_at(key, moment)
  return redis.call('ZCOUNT', key, string.format('(%.0f', moment - window), '+inf')
end
-- The first moment from ``moment`` on at which fewer than ``limit`` slots of ``key`` lie in the
-- window before it: when enough of the oldest have left it.
local function next_free(key, moment, limit)
  local count = count_at(key, moment)
  if count < limit then return moment end
  local lower = string.format('(%.0f', moment - window)
  local over = count - math.ceil(limit)
  local last = redis.call('ZRANGEBYSCORE', key, lower, '+inf', 'WITHSCORES', 'LIMIT', over, 1)
  return tonumber(last[2]) + window
end
-- Sends are spaced (one per interval, account-wide): each free slot comes alone, so the shares
-- decide who takes it, and the window never fills in a burst that the next second repeats. The
-- pace is a tenth faster than the window allows, so a task alone is paced by its own limiter only.
local pace = sends .. ':pace'
local interval = math.floor(0.9 * window / per_window)
local due = tonumber(redis.call('GET', pace) or '0')
-- Quiet: the task is alone on the budget. Then it takes slots ahead, the first free ones within
-- the horizon, spaced as it asks, and several leases in one call. Otherwise one of each, at once,
-- by the rules of the shares.
local quiet = #active == 1
local batch_interval = math.max(spacing, math.ceil(window / per_window))

local first = math.max(due, now)
local rate_ok, free_rate = true, 0
if has_slot or want_slots == 0 then
  rate_ok = true
elseif quiet then
  first = next_free(sends, first, per_window)
  rate_ok = first <= now + horizon
else
  -- Within its share a task takes any free slot; beyond it, a send slot only while no task waits
  -- below both its shares (each of those is owed the next one), and a connection only if more
  -- are free than such tasks wait.
  free_rate = per_window - count_at(sends, first)
  rate_ok = first <= now and free_rate > 0 and (mine_sent < rate_share or owed == 0)
end
local lease_ok = has_lease or want_leases == 0 or
  (free_leases > 0 and (mine_held < lease_share or free_leases > owed))

local wait = 0
local slots, granted = {}, {}
if rate_ok and lease_ok then
  redis.call('ZREM', waiting, task)
  -- A send that comes a little late does not push the next ones back (5 ms at most).
  local late = math.min(math.floor(interval / 2), 5000)
  local moment, n = first, 0
  while not has_slot and n < want_slots do
    if n > 0 then
      if not quiet then break end
      moment = next_free(sends, moment, per_window)
      if moment > now + horizon then break end
    end
    n = n + 1
    local id = prefix .. ':s' .. n
    redis.call('ZADD', sends, moment, id)
    redis.call('ZADD', my_sends, moment, id)
    table.insert(slots, id)
    table.insert(slots, moment)
    due = math.max(due, moment - late) + interval
    moment = math.max(due, moment + batch_interval)
  end
  if n > 0 then redis.call('SET', pace, due, 'PX', keep) end
  n = 0
  while not has_lease and n < want_leases and held + n < connections do
    if n > 0 and not quiet then break end
    n = n + 1
    local id = prefix .. ':l' .. n
    redis.call('ZADD', leases, now + lease_ttl, id)
    redis.call('ZADD', my_leases, now + lease_ttl, id)
    table.insert(granted, id)
  end
else
  redis.call('ZADD', waiting, now + waiting_ttl, task)
  if not rate_ok then
    if quiet or first > now then
      wait = first - now - (quiet and horizon or 0)
    elseif mine_sent >= rate_share then
      -- At its share: nothing for it until its own oldest send leaves the window.
      local oldest = redis.call('ZRANGE', my_sends, 0, 0, 'WITHSCORES')
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
for _, key in ipairs({sends, leases, tasks, waiting, my_sends, my_leases}) do
  redis.call('PEXPIRE', key, keep)
end
return {(rate_ok and lease_ok) and 1 or 0, wait, #active, used, held, now, others_waiting, slots, granted}
"""

# ARGV: task, presence ttl (us), lease ttl (us), key ttl (ms), now (us or empty), n: how many
# leases to keep follow, then the n leases, then the ids (leases and unused slots) given back.
# KEYS: leases, tasks, sends, waiting. Returns how many leases were still held, and how many
# tasks are present.
RENEW = """
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local task, presence_ttl, lease_ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local leases, tasks, sends, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local my_leases, my_sends = leases .. ':' .. task, sends .. ':' .. task
redis.call('ZADD', tasks, now + presence_ttl, task)
local kept, held = 0, tonumber(ARGV[6])
for i = 7, 6 + held do
  kept = kept + redis.call('ZADD', leases, 'XX', 'CH', now + lease_ttl, ARGV[i])
  redis.call('ZADD', my_leases, 'XX', now + lease_ttl, ARGV[i])
end
for i = 7 + held, #ARGV do
  redis.call('ZREM', leases, ARGV[i])
  redis.call('ZREM', my_leases, ARGV[i])
  redis.call('ZREM', sends, ARGV[i])
  redis.call('ZREM', my_sends, ARGV[i])
end
for _, key in ipairs({leases, tasks, my_leases, my_sends}) do
  redis.call('PEXPIRE', key, keep)
end
redis.call('ZREMRANGEBYSCORE', tasks, '-inf', now)
return {kept, redis.call('ZCARD', tasks)}
"""

# ARGV: task, ids (leases and unused send slots)... KEYS: leases, sends. A slot id is only ever
# given back unused: a slot that was sent in stays in the window.
RELEASE = """
local leases, sends = KEYS[1], KEYS[2]
for i = 2, #ARGV do
  redis.call('ZREM', leases, ARGV[i])
  redis.call('ZREM', leases .. ':' .. ARGV[1], ARGV[i])
  redis.call('ZREM', sends, ARGV[i])
  redis.call('ZREM', sends .. ':' .. ARGV[1], ARGV[i])
end
return 1
"""

# ARGV: task, ids (leases and unused send slots)... KEYS: leases, tasks, waiting, sends. The
# task's sends stay in the window: they were sent.
LEAVE = """
local task = ARGV[1]
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
end
redis.call('ZREM', KEYS[2], task)
redis.call('ZREM', KEYS[3], task)
redis.call('DEL', KEYS[1] .. ':' .. task, KEYS[4] .. ':' .. task)
return 1
"""


@dataclass(frozen=True)
class Decision:
    """One answer of the acquire script.

    :param admitted: the task got what it lacked (a send slot, a connection lease, or both).
    :param wait: when not admitted for the rate, seconds until a send slot may free up; 0 when
        only a connection is missing (leases come back when answers do: poll).
    :param active: tasks present on the budget, this one included.
    :param sent: send slots in the window before this call's.
    :param held: leases held before this call's.
    :param at: when the store decided, in seconds of its clock (Redis's ``TIME``).
    :param others_waiting: other tasks that asked for a slot or a connection and waited for it
        (within ``Timings.waiting_ttl``).
    :param slots: the send slots granted: ``(id, moment)``, the moment in seconds of the store's
        clock; the task sends in ``[moment, moment + Timings.slack]`` or gives the slot back.
        Several only while the task is alone on the budget (``active == 1``).
    :param leases: the connection leases granted.
    """

    admitted: bool
    wait: float
    active: int
    sent: int
    held: int
    at: float
    others_waiting: int = 0
    slots: tuple[tuple[str, float], ...] = ()
    leases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timings:
    """How long the budget's records live, in seconds (Redis's clock)."""

    window: float = 1.01  # a send counts for a second, and 10 ms for its way to ChartMogul
    slack: float = 0.005  # how late a send may go in its slot (the window grows by as much)
    horizon: float = 0.4  # how far ahead a task alone on the budget may take slots
    lease_ttl: float = 6.0  # renewed every 2 s while held; a killed worker's leases go after it
    presence_ttl: float = 5.0  # a task counts for fair shares until this long after it was last seen
    waiting_ttl: float = 0.3  # a task waiting for a slot is owed one until this long after asking
    key_ttl: float = 120.0  # an unused budget leaves Redis


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _now(now: float | None) -> int | str:
    return "" if now is None else _micros(now)


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
        prefix: str,
        *,
        per_window: int,
        connections: int,
        slots: int = 1,
        leases: int = 1,
        has_slot: bool = False,
        has_lease: bool = False,
        spacing: float = 0.0,
        released: Sequence[str] = (),
        unused: Sequence[str] = (),
        now: float | None = None,
    ) -> Decision:
        """Take what ``task`` lacks to send (a slot unless ``has_slot``, a lease unless
        ``has_lease``) in one step, or learn why not; while it is alone on the budget, up to
        ``slots`` slots (``spacing`` seconds apart or more, within ``Timings.horizon``) and
        ``leases`` leases. New ids start with ``prefix``. ``released`` leases and ``unused`` slots of the task
        are given back first (in the same call)."""
        t = self.timings
        args = [
            task,
            prefix,
            per_window,
            _micros(t.window + t.slack),
            connections,
            _micros(t.lease_ttl),
            _micros(t.presence_ttl),
            _micros(t.waiting_ttl),
            _micros(t.key_ttl) // 1000,
            _now(now),
            slots,
            leases,
            int(has_slot),
            int(has_lease),
            _micros(t.horizon),
            _micros(spacing),
            len(released),
            *released,
            *unused,
        ]
        admitted, wait, active, sent, held, at, others, granted_slots, granted_leases = self._acquire(
            keys=[self.sends, self.leases, self.tasks, self.waiting], args=args
        )
        pairs = iter(granted_slots)
        return Decision(
            admitted=bool(admitted),
            wait=int(wait) / 1_000_000,
            active=int(active),
            sent=int(sent),
            held=int(held),
            at=int(at) / 1_000_000,
            others_waiting=int(others),
            slots=tuple((_text(i), int(m) / 1_000_000) for i, m in zip(pairs, pairs, strict=True)),
            leases=tuple(_text(i) for i in granted_leases),
        )

    def renew(
        self, task: str, leases: Sequence[str], *, give_back: Sequence[str] = (), now: float | None = None
    ) -> tuple[int, int]:
        """Keep ``task`` present and its ``leases`` held, and give back ``give_back`` (leases and
        unused slots); how many of ``leases`` were still held, and how many tasks are present."""
        t = self.timings
        args = [
            task,
            _micros(t.presence_ttl),
            _micros(t.lease_ttl),
            _micros(t.key_ttl) // 1000,
            _now(now),
            len(leases),
            *leases,
            *give_back,
        ]
        kept, active = self._renew(keys=[self.leases, self.tasks, self.sends, self.waiting], args=args)
        return int(kept), int(active)

    def release(self, task: str, ids: Sequence[str]) -> None:
        """Give back leases whose requests are over, and send slots that were not sent in."""
        self._release(keys=[self.leases, self.sends], args=[task, *ids])

    def leave(self, task: str, ids: Sequence[str] = ()) -> None:
        """``task`` is done: its leases, unused slots and place in the fair shares go at once."""
        self._leave(keys=[self.leases, self.tasks, self.waiting, self.sends], args=[task, *ids])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
