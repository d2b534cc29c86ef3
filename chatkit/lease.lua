-- A handful of tokens from a token bucket shared by every gateway, for a gateway to spend
-- locally (gateway/limits.py, Leases): up to `want` tokens, as many as the bucket holds whole.
-- Returns {granted, 0}, or {0, ms until one token is there} when it holds none.
-- Time is the server's (TIME), one clock for all gateways. chatkit/ratelimit.py builds the call.
--
-- KEYS: bucket        ARGV: capacity, window_ms (capacity tokens refill over window_ms), want
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or capacity
local at = tonumber(held[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * capacity / window)
end
if tokens < 1 then
  return {0, math.ceil((1 - tokens) * window / capacity)}
end
local granted = math.min(tonumber(ARGV[3]), math.floor(tokens))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - granted), 'at', now)
redis.call('PEXPIRE', KEYS[1], window)
return {granted, 0}
