-- wrk script: POST a chat completion with the key and stream flag from the environment.
local key = os.getenv("BENCH_KEY") or "none"
local stream = os.getenv("BENCH_STREAM") == "1"
local model = os.getenv("BENCH_MODEL") or "bench-json"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
if stream then
  wrk.body = '{"model":"' .. model .. '","stream":true,"stream_options":{"include_usage":true},"max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
else
  wrk.body = '{"model":"' .. model .. '","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p90_us=%d p99_us=%d\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
