-- wrk script: the same request synbatch sends per row (POST /_synapse/admin/v1/join/<room>).
wrk.method = "POST"
wrk.path = "/_synapse/admin/v1/join/%21room1"
wrk.body = '{"user_id":"@u1:bench.local"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
