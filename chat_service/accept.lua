-- Accept one message into a dialog, atomically: a crash can neither skip nor repeat a seq, and
-- a retried send (same client_msg_id) gets the first result instead of a second message. The
-- sender's reply and the request's XACK happen here too, so a send costs one round trip.
--
-- KEYS: 1 seq counter, 2 idempotency record, 3 pending (sent, not yet stored) zset,
--       4 messages stream, 5 and 6 the two users' channels, 7 the sender's gateway channel,
--       8 the request stream
-- ARGV: 1 message JSON before the seq, 2 message JSON after the seq,
--       3 event JSON before the message, 4 event JSON between the message and its seq,
--       5 idempotency TTL seconds, 6 seq floor ('' when unknown), 7 stream entry field,
--       8 reply JSON before the message, 9 reply JSON after it,
--       10 request consumer group, 11 request entry id
-- Returns 1 for a new message, 0 for a repeat (both already answered to the sender), -1 when
-- the dialog has no counter here and the caller must look up the floor and call again
-- (nothing was published or acknowledged then).
local function answer(message)
  redis.call('PUBLISH', KEYS[7], ARGV[8] .. message .. ARGV[9])
  redis.call('XACK', KEYS[8], ARGV[10], ARGV[11])
end

local previous = redis.call('GET', KEYS[2])
if previous then
  answer(previous)
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] == '' then
    return -1
  end
  -- Never hand out a seq that a message still waiting for storage already has.
  local floor = tonumber(ARGV[6])
  local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > floor then
    floor = tonumber(top[2])
  end
  redis.call('SET', KEYS[1], floor, 'NX')
end
local seq = redis.call('INCR', KEYS[1])
local message = ARGV[1] .. seq .. ARGV[2]
redis.call('SET', KEYS[2], message, 'EX', tonumber(ARGV[5]))
redis.call('ZADD', KEYS[3], seq, message)
redis.call('XADD', KEYS[4], '*', ARGV[7], message)
-- Published from inside the script, so every subscriber sees a dialog's messages in seq order,
-- and the other devices hear of a message no later than the sender's own reply.
local event = ARGV[3] .. message .. ARGV[4] .. seq .. '}'
redis.call('PUBLISH', KEYS[5], event)
if KEYS[6] ~= KEYS[5] then
  redis.call('PUBLISH', KEYS[6], event)
end
answer(message)
return 1
