-- POST /v1/ebls: every request issues a document with a reference of its own. The body is the file named by
-- EBL_BENCH_BODY, with "@@REF@@" where the transportDocumentReference goes.
dofile(os.getenv("EBL_BENCH_LUA") .. "/common.lua")
local file = assert(io.open(os.getenv("EBL_BENCH_BODY"), "r"))
local before, after = file:read("*a"):match("^(.*)@@REF@@(.*)$")
file:close()
local counter = 0

function setup(thread)
  thread:set("number", (_G.threads or 0) + 1)
  _G.threads = (_G.threads or 0) + 1
end

function request()
  counter = counter + 1
  -- Reference: run tag (EBL_BENCH_TAG) + thread + counter, at most 20 characters as DCSA allows.
  local reference = string.format("%s%d%08d", os.getenv("EBL_BENCH_TAG"), number, counter)
  return wrk.format("POST", "/v1/ebls", nil, before .. reference .. after)
end
