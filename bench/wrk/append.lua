-- Appends of BENCH_EVENTS events (~150 bytes of data each) to random streams among
-- BENCH_STREAMS; the server assigns the event ids.
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local streams = tonumber(os.getenv("BENCH_STREAMS") or "1000")
local per_append = tonumber(os.getenv("BENCH_EVENTS") or "1")
local prefix = os.getenv("BENCH_PATH") or "/streams/Bench-"
local pad = string.rep("x", 96)
local n = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  seed()
end

local function event()
  n = n + 1
  -- data: {"n":..,"thread":..,"amount":..,"note":"xxx.."} is about 150 bytes
  return string.format(
    '{"type":"BenchEvent","data":{"n":%d,"thread":%d,"amount":%d,"note":"%s"}}',
    n, tid or 0, math.random(1000000), pad)
end

function request()
  local items = {}
  for i = 1, per_append do items[i] = event() end
  local body = '{"events":[' .. table.concat(items, ",") .. ']}'
  return wrk.format(nil, prefix .. math.random(streams), nil, body)
end
