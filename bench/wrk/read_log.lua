-- Pages of BENCH_LIMIT events of the global log after random positions of a log of
-- BENCH_HEAD events.
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local head = tonumber(os.getenv("BENCH_HEAD") or "100000")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "1000")

function init(args)
  seed()
end

function request()
  local after = math.random(0, head - limit)
  return wrk.format("GET", "/events?after=" .. after .. "&limit=" .. limit)
end
