-- wrk: POST a create for a distinct URL on every request (codes are generated).
local n = 0
local run = tostring(os.time())
request = function()
    n = n + 1
    local body = '{"url":"https://example.com/landing?run=' .. run .. '&n=' .. n .. '"}'
    return wrk.format("POST", "/api/v1/links", { ["Content-Type"] = "application/json" }, body)
end
