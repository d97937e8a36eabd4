-- GET /v1/ebls/{ref}, cycling through the references in EBL_BENCH_REFS (one a line), each thread from its own
-- starting point.
dofile(os.getenv("EBL_BENCH_LUA") .. "/common.lua")
local references = {}
for line in io.lines(os.getenv("EBL_BENCH_REFS")) do
  references[#references + 1] = line
end
local position = 0

function setup(thread)
  _G.numbered = (_G.numbered or 0) + 1
  thread:set("offset", _G.numbered * 7919)
end

function request()
  position = position + 1
  return wrk.format("GET", "/v1/ebls/" .. references[(offset + position) % #references + 1])
end
