-- Gives a channel its epoch before its first publish, so a subscriber that comes before any
-- publication is told the epoch the publications will carry (docs/architecture.md, "Hub: Redis
-- broker"). Keeps an epoch that is set, as publish.lua does.
-- KEYS: 1 epoch, 2 offset counter, 3 stream, 4 channel set
-- ARGV: 1 epoch to use if the channel has none, 2 channel name, 3 most channels
local epoch = redis.call('GET', KEYS[1])
if epoch then
  return {epoch, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 0
    and redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[3]) then
  return redis.error_reply('TOO_MANY_CHANNELS')
end
-- a new epoch: whatever an older life of the channel left is not part of it
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SADD', KEYS[4], ARGV[2])
return {ARGV[1], 0}
