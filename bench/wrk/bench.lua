-- bench/wrk/bench.lua -- the request mix of every scenario of bench/run.sh.
--
--   wrk ... -s bench/wrk/bench.lua URL -- MODE PREFIX [ARG...]
--
--   get   PREFIX NIDS       GET PREFIX/posts/{id}, id uniformly random in 1..NIDS (S1, S7)
--   close PREFIX NIDS       the same with "Connection: close" (S6)
--   paced PREFIX NIDS MS    as get, each connection pausing MS ms after every reply: a fixed
--                           offered load below both sides' capacity (the scale phase's latency)
--   path  PREFIX PATH       GET PREFIX..PATH, one fixed request (S2, S3)
--   post  PREFIX            POST PREFIX/posts, a new ~100-byte post each time (S4)
--   mix   PREFIX NIDS PCT   PCT% POSTs as above, the rest GETs as in get (S5)
--
-- PREFIX is "/v1" for every server but json-server, which serves at "/".
-- Requests are formatted once in init() and picked from a table, so the Lua
-- cost per request is one table lookup (wrk -t1 is the ceiling near 120k req/s).
-- done() prints one line "WRKJSON {...}" that bench/report.py reads.

local mode, prefix
local reqs, nreqs = nil, 0

local function post_body(i)
    return string.format(
        '{"title":"bench post %d lorem ipsum","userId":%d,"views":%d,"published":true,"tags":["news","tech"]}',
        i, i % 10 + 1, (i * 7919) % 100000)
end

function init(args)
    mode = args[1] or "get"
    prefix = args[2] or "/v1"
    math.randomseed(20240501)
    local json_hdr = { ["Content-Type"] = "application/json" }
    if mode == "path" then
        wrk.method = "GET"
        wrk.path = prefix .. (args[3] or "/")
        return -- static request: wrk formats it once, no request() call
    end
    if mode == "post" then
        -- different bodies so every POST is a new document (the server assigns the id)
        reqs = {}
        nreqs = 4096
        for i = 1, nreqs do
            reqs[i] = wrk.format("POST", prefix .. "/posts", json_hdr, post_body(i))
        end
    else
        local nids = tonumber(args[3] or "10000")
        local pct = tonumber(args[4] or "0")
        local hdr = {}
        if mode == "paced" then
            local ms = tonumber(args[4] or "2")
            -- wrk calls delay() after each reply when the script defines it (here only)
            delay = function()
                return ms
            end
        elseif mode == "close" then
            hdr["Connection"] = "close"
        end
        reqs = {}
        nreqs = 65536
        for i = 1, nreqs do
            if mode == "mix" and math.random(100) <= pct then
                reqs[i] = wrk.format("POST", prefix .. "/posts", json_hdr, post_body(i))
            else
                reqs[i] = wrk.format("GET", prefix .. "/posts/" .. math.random(nids), hdr, nil)
            end
        end
    end
    local k = 0
    request = function()
        k = k + 1
        if k > nreqs then
            k = 1
        end
        return reqs[k]
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
        '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
        '"max_us":%d,"mean_us":%.1f}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
