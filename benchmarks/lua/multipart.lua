-- wrk script: POST ready multipart/form-data bodies (one image search each), taken in turn from a binary file.
-- usage: wrk -s multipart.lua URL -- BODIES_FILE PATH CONTENT_TYPE
-- BODIES_FILE holds, per body, its length in bytes on a line of its own and then the body's bytes (written by
-- benchmarks/load.py, `MultipartTarget`); CONTENT_TYPE is "multipart/form-data; boundary=..." shared by all bodies.
-- setup() (each wrk thread its own offset), request() (the bodies in turn) and done() (the "WRKJSON {...}" line)
-- are those of bodies.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "bodies.lua")

local function read_framed(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local found, at = {}, 1
  while at <= #data do
    local newline = assert(data:find("\n", at, true), "truncated bodies file: " .. path)
    local length = assert(tonumber(data:sub(at, newline - 1)), "bad length line in " .. path)
    found[#found + 1] = data:sub(newline + 1, newline + length)
    at = newline + length + 1
  end
  assert(#found > 0, "no bodies in " .. path)
  return found
end

function init(args)
  bodies = read_framed(args[1])
  target = args[2]
  headers = {["Content-Type"] = args[3]}
  position = (thread_id or 0) * 7919
end
