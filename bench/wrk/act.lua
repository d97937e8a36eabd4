-- POST /v1/ebls/{ref}/transactions: every request acts on another eBL. References are read from EBL_BENCH_REFS
-- (one a line); thread k of n takes references k, k+n, k+2n, ...; the body (EBL_BENCH_BODY) is the same for all.
dofile(os.getenv("EBL_BENCH_LUA") .. "/common.lua")
local file = assert(io.open(os.getenv("EBL_BENCH_BODY"), "r"))
local body = file:read("*a")
file:close()
local references = {}
for line in io.lines(os.getenv("EBL_BENCH_REFS")) do
  references[#references + 1] = line
end
local threads = tonumber(os.getenv("EBL_BENCH_THREADS"))

function setup(thread)
  _G.numbered = (_G.numbered or 0) + 1
  thread:set("number", _G.numbered)
end

local position = nil

function request()
  position = (position or number) + (position and threads or 0)
  local reference = references[position]
  if reference == nil then
    -- Out of eBLs: ask for one that does not exist, which counts as a non-2xx answer and spoils the run.
    reference = "EXHAUSTED"
  end
  return wrk.format("POST", "/v1/ebls/" .. reference .. "/transactions", nil, body)
end
