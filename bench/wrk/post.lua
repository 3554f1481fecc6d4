-- wrk script of `npm run bench` (bench/proxy.bench.ts): every request is a POST of BENCH_BODY with
-- content-type JSON and, when BENCH_AUTHORIZATION is set, that authorization header. At the end it
-- prints one line `BENCH_RESULT {json}` with the counts and latency percentiles (microseconds), so the
-- bench does not have to parse wrk's human-readable report.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["content-type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
  wrk.headers["authorization"] = authorization
end

-- BENCH_DELAY_MS: each connection waits that long after a response before its next request, which
-- paces the load at about connections × 1000 / (delay + latency) requests per second.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause ~= nil and pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\nBENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
