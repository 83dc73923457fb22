-- wrk script for bench/mixes.py: sends, in turn, the requests listed in the file named by the
-- first argument (`wrk ... -s bench/rotate.lua URL -- FILE`), one per line:
--   METHOD <TAB> PATH <TAB> BODY (may be empty) <TAB> Header: value <TAB> Header: value ...
-- The requests are formatted once, in init(), so that request() costs a table read whether the
-- file has one line or 100 000 (the ratios compare the server, not this script). No response()
-- callback: statuses are counted by the server's /metrics instead, which keeps wrk fast.
local reqs, n, i = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    local f = {}
    for part in (line .. "\t"):gmatch("(.-)\t") do
      f[#f + 1] = part
    end
    local headers = {}
    for k = 4, #f do
      local name, value = f[k]:match("^([^:]+):%s*(.*)$")
      if name then
        headers[name] = value
      end
    end
    local body = nil
    if f[3] ~= nil and f[3] ~= "" then
      body = f[3]
    end
    n = n + 1
    reqs[n] = wrk.format(f[1], f[2], headers, body)
  end
  if n == 0 then
    error("no requests in " .. tostring(args[1]))
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end
