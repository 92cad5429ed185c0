-- wrk script: GET /<prefix><n> for a uniformly random n in [0, CODES), so that requests
-- spread over many links (most of them miss a small in-process cache).
local codes = tonumber(os.getenv("CODES") or "10000")
local prefix = os.getenv("CODE_PREFIX") or "bench-"
math.randomseed(os.time())
request = function()
    return wrk.format("GET", "/" .. prefix .. math.random(0, codes - 1))
end
