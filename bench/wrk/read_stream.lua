-- Pages of BENCH_LIMIT events from random versions of one stream of BENCH_VERSION
-- events.
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local stream = os.getenv("BENCH_STREAM") or "Hot-1"
local version = tonumber(os.getenv("BENCH_VERSION") or "10000")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "100")

function init(args)
  seed()
end

function request()
  local from = math.random(version - limit + 1)
  return wrk.format("GET", "/streams/" .. stream .. "?from=" .. from .. "&limit=" .. limit)
end
