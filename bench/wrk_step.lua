-- One layer-wise step per request, a fresh global_step each, over 16 runs (bench/ingest.py --wrk).
-- Arguments: the files holding the payload before and after its global_step; RUNX in the first names the run.
local befores, after, step = {}, nil, 0

function init(args)
  local file = io.open(args[1], "rb")
  local before = file:read("*a")
  file:close()
  file = io.open(args[2], "rb")
  after = file:read("*a")
  file:close()
  for i = 1, 16 do
    befores[i] = before:gsub("RUNX", "wrk" .. i)
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  step = step + 1
  return wrk.format(nil, nil, nil, befores[step % 16 + 1] .. step .. after)
end
