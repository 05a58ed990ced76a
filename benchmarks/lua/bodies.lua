-- wrk script: POST one JSON body per request, taken in turn from a file of one body per line.
-- usage: wrk -s bodies.lua URL -- BODIES_FILE PATH
-- Each wrk thread starts at its own offset; done() prints one "WRKJSON {...}" line for benchmarks/load.py.
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  target = args[2]
  headers = {["Content-Type"] = "application/json"}
  position = (thread_id or 0) * 7919
end

function request()
  position = position + 1
  return wrk.format("POST", target, headers, bodies[(position % #bodies) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, ' ..
    '"errors_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
