-- POST a fixed form body on every request (token-endpoint throughput):
--   wrk ... -s bench/lua/post_form.lua URL -- BODY
-- Other headers (client authentication) come from wrk's -H, i.e. the scenario's headers.

function init(args)
  wrk.method = "POST"
  wrk.body = args[1] or ""
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
