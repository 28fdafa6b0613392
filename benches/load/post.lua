-- wrk script for benches/load/run.sh: POST the ~300-byte Messages body in
-- body.json (it holds an 18-digit ID-card number and a 16-digit card number, so
-- request redaction has something to do) to /v1/messages with the tenant key,
-- non-streaming, and print one machine-readable RESULT line at the end.
--
-- Environment: LOAD_KEY (tenant gateway key), LOAD_BODY_FILE (path of body.json).

local f = assert(io.open(assert(os.getenv("LOAD_BODY_FILE"), "LOAD_BODY_FILE unset"), "rb"))
local body = f:read("*a"):gsub("%s+$", "")
f:close()

wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.body = body
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = assert(os.getenv("LOAD_KEY"), "LOAD_KEY unset")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d sockerr=%d p50_us=%d p99_us=%d p999_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean))
end
