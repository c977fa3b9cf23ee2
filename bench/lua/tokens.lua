-- Send a different credential on every request, cycling through a file of them (one per line).
-- For uncached-verification runs (a new JWT per request, many API keys, ...):
--   wrk ... -s bench/lua/tokens.lua URL -- TOKENS_FILE [HEADER] [PREFIX]
-- HEADER defaults to Authorization and PREFIX to "" (use "Bearer " for JWTs). A scenario gives the
-- arguments through `lua_args`, or its setup hook through Prepared(lua_args=...) once it has
-- written the file (under ctx.prefix). Each wrk thread starts at a different line.

local tokens = {}
local header = "Authorization"
local prefix = ""
local index = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("tokens.lua: give the tokens file after --")
  end
  header = args[2] or header
  prefix = args[3] or prefix
  for line in io.lines(path) do
    if line ~= "" then
      tokens[#tokens + 1] = prefix .. line
    end
  end
  if #tokens == 0 then
    error("tokens.lua: no tokens in " .. path)
  end
  index = (id or 0) * 7919 % #tokens
end

local threads = 0

function setup(thread)  -- runs before each thread's init()
  thread:set("id", threads)
  threads = threads + 1
end

function request()
  index = index % #tokens + 1
  wrk.headers[header] = tokens[index]
  return wrk.format()
end
