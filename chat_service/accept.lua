#!lua
-- Accept one message into a dialog, atomically: a crash can neither skip nor repeat a seq, and
-- a retried send (same client_msg_id) gets the first result instead of a second message. The
-- sender's reply and the request's XACK happen here too, so a send costs one round trip.
--
-- Called through chat_service.accept.AcceptCall, whose fields are these locals, in this order.
-- The JSON pieces come from chat_service/send_frames.py, cut from the envelope schemas: the
-- script only puts the message and its seq between them.
-- Returns 1 for a new message, 0 for a repeat (both already answered to the sender), -1 when
-- the dialog has no counter here and the caller must look up the floor and call again
-- (nothing was published or acknowledged then), and {seq, id} for a repeat of a message that
-- has left the pending set (it is stored): the caller reads it from the table, answers the
-- sender and acknowledges the request (nothing was published or acknowledged here).
--
-- The idempotency record keeps only '<seq>:<id>' (about 45 bytes, not the message): the
-- message itself is in the pending set until stored, then in PostgreSQL.

-- Every key it touches is in KEYS, and all share the dialog's partition tag (chatkit/keys.py):
-- one slot, which the '#!lua' line above has a Redis 7+ / Valkey server check. Channels are
-- not keys: they come in ARGV.

-- KEYS
local seq_counter = KEYS[1]         -- the dialog's last seq (INCR)
local idempotency_record = KEYS[2]  -- '<seq>:<id>' of the message this client_msg_id made
local pending = KEYS[3]             -- messages sent, not yet stored: zset scored by seq
local messages_stream = KEYS[4]     -- the dialog's partition of the messages stream
local request_stream = KEYS[5]      -- where the send request came from, to acknowledge it
-- ARGV
local lo_channel = ARGV[1]          -- the two users' channels
local hi_channel = ARGV[2]
local gateway_channel = ARGV[3]     -- the sender's gateway, for the reply
local message_before_seq = ARGV[4]  -- message JSON: before the seq
local message_after_seq = ARGV[5]   --   and after it
local event_before_message = ARGV[6]  -- user event JSON: before the message
local event_before_seq = ARGV[7]    --   between the message and the seq
local event_after_seq = ARGV[8]     --   after the seq
local reply_before_message = ARGV[9]  -- the sender's reply JSON: before the message
local reply_after_message = ARGV[10]  --   and after it
local idempotency_ttl = ARGV[11]    -- seconds
local seq_floor = ARGV[12]          -- the last stored seq, '' when not looked up
local entry_field = ARGV[13]        -- the one field of a messages stream entry
local request_group = ARGV[14]      -- consumer group of the request stream
local request_entry_id = ARGV[15]   -- the request's entry
local message_id = ARGV[16]         -- the new message's id (also inside message_before_seq)

local function answer(message)
  redis.call('PUBLISH', gateway_channel, reply_before_message .. message .. reply_after_message)
  redis.call('XACK', request_stream, request_group, request_entry_id)
end

local previous = redis.call('GET', idempotency_record)
if previous then
  local seq, id = string.match(previous, '^(%d+):(.*)$')
  if not seq then
    -- A record written before records were slimmed holds the whole message.
    answer(previous)
    return 0
  end
  local member = redis.call('ZRANGEBYSCORE', pending, seq, seq)[1]
  if member then
    answer(member)
    return 0
  end
  return {tonumber(seq), id}
end
if redis.call('EXISTS', seq_counter) == 0 then
  if seq_floor == '' then
    return -1
  end
  -- Never hand out a seq that a message still waiting for storage already has.
  local floor = tonumber(seq_floor)
  local top = redis.call('ZRANGE', pending, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > floor then
    floor = tonumber(top[2])
  end
  redis.call('SET', seq_counter, floor, 'NX')
end
local seq = redis.call('INCR', seq_counter)
local message = message_before_seq .. seq .. message_after_seq
redis.call('SET', idempotency_record, seq .. ':' .. message_id, 'EX', tonumber(idempotency_ttl))
redis.call('ZADD', pending, seq, message)
redis.call('XADD', messages_stream, '*', entry_field, message)
-- Published from inside the script, so every subscriber sees a dialog's messages in seq order,
-- and the other devices hear of a message no later than the sender's own reply.
local event = event_before_message .. message .. event_before_seq .. seq .. event_after_seq
redis.call('PUBLISH', lo_channel, event)
if hi_channel ~= lo_channel then
  redis.call('PUBLISH', hi_channel, event)
end
answer(message)
return 1
