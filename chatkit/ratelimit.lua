-- Token buckets shared by every gateway, checked in the same round trip as the request's
-- forward: if every bucket holds a token, take one from each and add the request to its
-- stream; otherwise change nothing and return how long (ms) until all of them would.
-- chatkit/ratelimit.py builds the call. Time is the server's (TIME), one clock for all gateways.
--
-- KEYS: bucket_1 .. bucket_n, stream
-- ARGV: n, then per bucket: capacity, window_ms (capacity tokens refill over window_ms),
--       then maxlen, entry_field, entry
local n = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local wait = 0
local level = {}
for i = 1, n do
  local capacity = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local held = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(held[1]) or capacity
  local at = tonumber(held[2]) or now
  if now > at then
    tokens = math.min(capacity, tokens + (now - at) * capacity / window)
  end
  if tokens < 1 then
    local needed = math.ceil((1 - tokens) * window / capacity)
    if needed > wait then wait = needed end
  end
  level[i] = tokens
end
if wait > 0 then
  return wait
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'tokens', level[i] - 1, 'at', now)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
local tail = 2 * n + 2
redis.call('XADD', KEYS[n + 1], 'MAXLEN', '~', ARGV[tail], '*', ARGV[tail + 1], ARGV[tail + 2])
return 0
