"""Trimming the messages streams (one per partition) of entries every consumer group has acknowledged.

Without it each ``chat:messages:{t}`` keeps every message ever sent and Redis grows forever. The floor
is computed over *all* groups of the stream, not only the storage worker's, so a group added
later (search indexing, say) never loses entries it has not handled: for each group, its oldest
pending entry, or, with nothing pending, its last-delivered id (everything up to it is
acknowledged). The floor and the XTRIM run in one script, so no group can read or claim in
between. ``MINID ~`` only frees whole stream nodes, which is cheap, and keeps the floor entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from chatkit.redis import RedisClient, ReplyError

log = logging.getLogger(__name__)

# KEYS[1]: the stream. Returns how many entries were removed.
_TRIM = """
local function parts(id)
  return string.match(id, '^(%d+)-(%d+)$')
end
-- Stream ids as numbers can exceed a Lua double's exact range: compare them as digit strings.
local function before(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, keep
  for i = 1, #group, 2 do
    if group[i] == 'name' then
      name = group[i + 1]
    elseif group[i] == 'last-delivered-id' then
      keep = group[i + 1]
    end
  end
  local pending = redis.call('XPENDING', KEYS[1], name)
  if pending[1] > 0 then
    keep = pending[2]
  end
  if floor == nil or before(keep, floor) then
    floor = keep
  end
end
-- No group yet: nobody has read anything, so nothing may go.
if floor == nil then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
"""
_TRIM_SHA = hashlib.sha1(_TRIM.encode()).hexdigest()


class Trimmer:
    """Trims at most every ``interval`` seconds: the work is per stream node, not per entry,
    so doing it per batch would only add round trips."""

    def __init__(self, redis: RedisClient, streams: list[str], interval: float) -> None:
        self.redis = redis
        self.streams = streams
        self.interval = interval
        self._next = 0.0

    async def maybe_trim(self) -> int:
        """Trim if it is time; returns how many entries went. Redis outages propagate."""
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + self.interval
        # Pipelined: one script per stream (each in its stream's slot), all in one round trip.
        outcomes = await asyncio.gather(
            *(self.redis.eval_script(_TRIM_SHA, _TRIM, [stream], []) for stream in self.streams),
            return_exceptions=True,
        )
        removed = 0
        for stream, outcome in zip(self.streams, outcomes, strict=True):
            if isinstance(outcome, ReplyError):
                # Never worth stopping the storage of messages for.
                log.warning("trimming %s failed: %s", stream, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                removed += int(outcome)
        if removed:
            log.debug("trimmed %d acknowledged entries from %d streams", removed, len(self.streams))
        return removed
