-- Shared by the wrk scripts of bench/load.py: the API key comes from the environment, and done() prints one JSON
-- line (requests, seconds, latency percentiles in µs, non-2xx answers and socket errors) for the driver to parse.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("EBL_BENCH_API_KEY")
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, "max_us": %d, "non2xx": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
