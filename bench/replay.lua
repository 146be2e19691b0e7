-- wrk script: replay pre-generated, individually signed requests from a file.
--
-- Env:
--   BENCH_REQS     file with one request per line: METHOD \t PATH?QUERY \t HEADERS \t BODY
--                  (HEADERS = "Name: value" pairs joined by \31; no tab/newline in any field)
--   BENCH_THREADS  wrk -t value; thread i sends lines i, i+T, i+2T, ... so every request is
--                  sent by exactly one thread (unique message id -> one new inbox row)
-- When a thread runs out of lines it starts again from its first one (counted as "wrapped":
-- those repeats are duplicates, acknowledged without a new row).
-- done() prints one machine-readable line starting with "RESULT".

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local n = 0
local pos = 0
issued = 0
wrapped = 0

local function split(s, sep)
  local out = {}
  local start = 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      table.insert(out, string.sub(s, start))
      return out
    end
    table.insert(out, string.sub(s, start, i - 1))
    start = i + #sep
  end
end

function init(args)
  local path = os.getenv("BENCH_REQS")
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local me = tid or 0
  local f = assert(io.open(path, "rb"))
  local line_no = 0
  for line in f:lines() do
    if line_no % nthreads == me then
      local parts = split(line, "\t")
      local headers = {}
      if parts[3] ~= "" then
        for _, h in ipairs(split(parts[3], "\31")) do
          local c = string.find(h, ":", 1, true)
          headers[string.sub(h, 1, c - 1)] = string.sub(h, c + 2)
        end
      end
      n = n + 1
      reqs[n] = wrk.format(parts[1], parts[2], headers, parts[4])
    end
    line_no = line_no + 1
  end
  f:close()
end

function request()
  pos = pos + 1
  if pos > n then
    pos = 1
    wrapped = wrapped + 1
  end
  issued = issued + 1
  return reqs[pos]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local total_issued, total_wrapped = 0, 0
  local by = {}
  for _, t in ipairs(threads) do
    table.insert(by, tostring(t:get("issued") or 0))
    total_issued = total_issued + (t:get("issued") or 0)
    total_wrapped = total_wrapped + (t:get("wrapped") or 0)
  end
  io.write(string.format(
    "RESULT rps=%.1f requests=%d issued=%d issued_by=%s wrapped=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f"
      .. " p999_ms=%.3f max_ms=%.3f mean_ms=%.3f non2xx=%d connect_err=%d read_err=%d"
      .. " write_err=%d timeout=%d\n",
    summary.requests / secs, summary.requests, total_issued, table.concat(by, ","),
    total_wrapped,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000, latency.mean / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
