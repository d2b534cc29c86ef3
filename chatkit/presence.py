"""Presence in Redis: who is online, kept per gateway so that a gateway that dies (kill -9)
takes its users offline with it.

- ``chat:presence:{user}`` holds the ids of the gateways where the user has a logged-in
  connection; the user is online while one of them is alive. ``chat:gw:{gw}:users`` holds the
  same facts the other way round, for sweeping.
- Each gateway renews ``chat:gw:{gw}:alive`` every third of ``presence_ttl_seconds``; a gateway
  gets a fresh id every start, so a restarted one inherits nothing from the one that died.
- chat_service sweeps (every third of the ttl): a gateway whose heartbeat expired loses its
  users, each of them going offline when no other gateway holds them.
- A user's first gateway (online) and the removal of their last (offline) is put on the
  ``chat:presence_changes`` stream, in the same script, for chat_service to tell the peers.

Every change is one Lua script, so two gateways (or a gateway and a sweeper) cannot both
announce one transition. Key names come from chatkit.keys, passed in as KEYS or prefixes."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from chatkit import keys
from chatkit.envelopes import ENTRY_FIELD
from chatkit.redis import RedisClient

# The presence changes stream keeps about this many entries (consumed within milliseconds).
CHANGES_MAXLEN = 100_000


class PresenceChange(msgspec.Struct):
    """One entry of the presence changes stream (written by the scripts below, as JSON)."""

    user_id: int
    online: bool


def _change_script(command: str, last: int, online: str) -> str:
    """A join (SADD) or leave (SREM) of users on one gateway: the change is recorded on the
    stream only when it made the user's gateway set go from empty to 1 or from 1 to empty.
    KEYS: the gateway's users set. ARGV: gateway id, presence key prefix, changes stream,
    maxlen, entry field, then user ids."""
    return f"""
local gw = ARGV[1]
for i = 6, #ARGV do
  local user = ARGV[i]
  local key = ARGV[2] .. user
  redis.call('{command}', KEYS[1], user)
  if redis.call('{command}', key, gw) == 1 and redis.call('SCARD', key) == {last} then
    redis.call('XADD', ARGV[3], 'MAXLEN', '~', ARGV[4], '*', ARGV[5],
      '{{"user_id":' .. user .. ',"online":{online}}}')
  end
end
return 0
"""


JOIN = _change_script("SADD", 1, "true")
LEAVE = _change_script("SREM", 0, "false")

# KEYS: alive key, users set, gateways set. ARGV: gateway id, presence prefix, stream, maxlen,
# entry field. Returns how many users it took offline, or -1 if the gateway is alive.
SWEEP = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local gone = 0
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. user
  if redis.call('SREM', key, ARGV[1]) == 1 and redis.call('SCARD', key) == 0 then
    redis.call('XADD', ARGV[3], 'MAXLEN', '~', ARGV[4], '*', ARGV[5],
      '{"user_id":' .. user .. ',"online":false}')
    gone = gone + 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return gone
"""

# KEYS: alive key, gateways set. ARGV: gateway id, ttl ms. Returns 1 if the heartbeat was
# still there (nothing was swept), 0 if it had expired or never was.
HEARTBEAT = """
local previous = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', KEYS[2], ARGV[1])
if previous then return 1 end
return 0
"""

# Which of the given users are online: KEYS are their presence sets; ARGV[1] the gateway key
# prefix. Returns 1 or 0 per user.
ONLINE = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = 0
  for _, gw in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('EXISTS', ARGV[1] .. gw .. ':alive') == 1 then
      out[i] = 1
      break
    end
  end
end
return out
"""

# Publish ARGV[1] to the channels ARGV[2..] of the users whose presence sets (KEYS, same
# order) are not empty: a peer with no connection anywhere is not written to at all.
PUBLISH_TO_ONLINE = """
local sent = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('PUBLISH', ARGV[i + 1], ARGV[1])
    sent = sent + 1
  end
end
return sent
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


_SHAS = {script: _sha(script) for script in (JOIN, LEAVE, SWEEP, HEARTBEAT, ONLINE, PUBLISH_TO_ONLINE)}


async def run(redis: RedisClient, script: str, keys_: tuple[str, ...], args: tuple[object, ...]) -> Any:
    return await redis.eval_script(_SHAS[script], script, keys=keys_, args=args)


def _change_args(gateway_id: str, users: list[int]) -> tuple[object, ...]:
    return (gateway_id, keys.PRESENCE_PREFIX, keys.PRESENCE_CHANGES, CHANGES_MAXLEN, ENTRY_FIELD, *users)


async def join(redis: RedisClient, gateway_id: str, users: list[int]) -> None:
    """These users have a logged-in connection on this gateway (again)."""
    await run(redis, JOIN, (keys.gateway_users(gateway_id),), _change_args(gateway_id, users))


async def leave(redis: RedisClient, gateway_id: str, users: list[int]) -> None:
    """These users have no logged-in connection left on this gateway."""
    await run(redis, LEAVE, (keys.gateway_users(gateway_id),), _change_args(gateway_id, users))


async def heartbeat(redis: RedisClient, gateway_id: str, ttl_ms: int) -> bool:
    """Renew the gateway's heartbeat; False when it had expired (its users may have been swept)."""
    found = await run(redis, HEARTBEAT, (keys.gateway_alive(gateway_id), keys.GATEWAYS), (gateway_id, ttl_ms))
    return bool(found == 1)


async def end(redis: RedisClient, gateway_id: str) -> None:
    """A gateway stopping: its heartbeat goes, and whoever it still holds is swept now."""
    await redis.call("DEL", keys.gateway_alive(gateway_id))
    await sweep(redis, gateway_id)


async def sweep(redis: RedisClient, gateway_id: str) -> int:
    """Take the users of a dead gateway offline (nothing if it is alive); how many went offline."""
    gone = await run(
        redis, SWEEP,
        (keys.gateway_alive(gateway_id), keys.gateway_users(gateway_id), keys.GATEWAYS),
        _change_args(gateway_id, [])[:5],
    )
    return max(0, int(gone))


async def sweep_all(redis: RedisClient) -> int:
    """Sweep every gateway whose heartbeat expired; how many users went offline."""
    gateways = await redis.call("SMEMBERS", keys.GATEWAYS)
    total = 0
    for gateway in gateways or ():
        total += await sweep(redis, gateway.decode() if isinstance(gateway, bytes) else str(gateway))
    return total


async def online(redis: RedisClient, user_ids: list[int]) -> list[bool]:
    """Whether each user has a connection on a live gateway, in one call."""
    if not user_ids:
        return []
    flags = await run(redis, ONLINE, tuple(keys.presence(u) for u in user_ids), (keys.GATEWAY_PREFIX,))
    return [bool(flag) for flag in flags]


async def publish_to_online(redis: RedisClient, user_ids: list[int], event: bytes) -> int:
    """Publish ``event`` to the channel of each of these users who is connected somewhere."""
    if not user_ids:
        return 0
    sent = await run(
        redis, PUBLISH_TO_ONLINE, tuple(keys.presence(u) for u in user_ids),
        (event, *(keys.user_channel(u) for u in user_ids)),
    )
    return int(sent)
