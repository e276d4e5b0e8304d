-- relay.lua: wrk -s script for relay.sh: POST the body in $RELAY_BODY
-- (headers come from wrk -H), then report.lua's one-line summary.
wrk.method = "POST"
wrk.body = os.getenv("RELAY_BODY")
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
