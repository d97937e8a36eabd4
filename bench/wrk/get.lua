-- GET a path (EBL_BENCH_PATH) with an API key: the trivial authenticated endpoint the others are compared with.
dofile(os.getenv("EBL_BENCH_LUA") .. "/common.lua")
local path = os.getenv("EBL_BENCH_PATH")

function request()
  return wrk.format("GET", path)
end
