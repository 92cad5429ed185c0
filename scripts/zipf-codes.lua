-- wrk script: the long tail. GET /<prefix><rank-1> where rank follows Zipf(ZIPF_S) over
-- LINKS links (rank 1 is the most clicked), sent as a browser following a shared link
-- would: a browser's User-Agent, Accept and Referer, and a client address drawn from
-- CLIENTS addresses in X-Forwarded-For (the service trusts loopback as a proxy in the
-- benchmark, so every address is its own visitor).
--
-- Requests are built once, in a pool of POOL requests (each a fresh draw), and sent in
-- turn: building one per request in Lua capped wrk at ~48k requests/s on this machine,
-- below what the service serves. The pool is a sample of the stream, so a run touches
-- at most POOL distinct (link, visitor) pairs; keep POOL near the number of requests a
-- run sends. The same script drives the bare baseline server, so both pay alike.
-- (wrk embeds LuaJIT: Lua 5.1, no integer division or bit operators.)
local links = tonumber(os.getenv("LINKS") or "100000")
local s = tonumber(os.getenv("ZIPF_S") or "1.0")
local clients = tonumber(os.getenv("CLIENTS") or "1000000")
local prefix = os.getenv("CODE_PREFIX") or "L"
local pool_size = tonumber(os.getenv("POOL") or "500000")

-- Cumulative distribution, once per thread: P(rank <= k) = H(k) / H(links).
local cdf = {}
local total = 0
for k = 1, links do
    total = total + 1 / k ^ s
    cdf[k] = total
end
for k = 1, links do cdf[k] = cdf[k] / total end

local function rank()
    local u, lo, hi = math.random(), 1, links
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return lo
end

local headers = {
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ["Referer"] = "https://news.example.com/articles/2026/11/some-story?utm_source=feed",
}

math.randomseed(os.time())
local pool = {}
for i = 1, pool_size do
    local c = math.random(0, clients - 1)
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(c / 65536) % 256, math.floor(c / 256) % 256, c % 256)
    pool[i] = wrk.format("GET", "/" .. prefix .. (rank() - 1), headers)
end
cdf = nil
local next_request = 0

request = function()
    next_request = next_request % pool_size + 1
    return pool[next_request]
end
