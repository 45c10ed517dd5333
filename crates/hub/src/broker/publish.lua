-- Publishes one notification on one channel, atomically (docs/architecture.md, "Hub: Redis broker").
-- KEYS: 1 epoch, 2 offset counter, 3 stream, 4 channel set, [5 idempotency key]
-- ARGV: 1 epoch to use if the channel has none, 2 channel name, 3 history length,
--       4 history TTL in seconds, 5 most channels, 6 fan-out pub/sub channel,
--       7 the notification as JSON without offset and epoch (an object starting with '{"channel":')
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 0
      and redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[5]) then
    return redis.error_reply('TOO_MANY_CHANNELS')
  end
  -- a new epoch: whatever an older life of the channel left is not part of it
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SADD', KEYS[4], ARGV[2])
end
local ttl = tonumber(ARGV[4])
local idempotency = KEYS[5]
if idempotency then
  local earlier = redis.call('GET', idempotency)
  if earlier then
    return {epoch, tonumber(earlier), 1}
  end
end
local offset = redis.call('INCR', KEYS[2])
if idempotency then
  redis.call('SET', idempotency, offset, 'EX', ttl)
end
local written = string.format('%d', offset)
local message = '{"offset":' .. written .. ',"epoch":"' .. epoch .. '",' .. string.sub(ARGV[7], 2)
-- the entry id is the offset, so a range of offsets is a range of ids
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], written .. '-0', 'n', message)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('PUBLISH', ARGV[6], message)
return {epoch, offset, 0}
