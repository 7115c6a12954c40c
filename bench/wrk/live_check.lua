-- GET /health/live: a round trip through the whole server and app that touches no
-- database, the floor of any request's latency on the same server.
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

function request()
  return wrk.format("GET", "/health/live")
end
