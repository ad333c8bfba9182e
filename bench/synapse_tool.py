#!/usr/bin/env python3
"""Helpers for bench/synapse_join.sh (standard library only). Traffic only to the harness's
127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    synapse_tool.py users PREFIX N      create @PREFIX0..N-1:localhost (admin PUT, 16 threads);
                                        prints the user ids, one a line
    synapse_tool.py seq ROOM_ID USERS   join each user of the file USERS to ROOM_ID, one request at
                                        a time on one keep-alive connection; prints "ok failed"
    synapse_tool.py members ROOM_ID     prints the number of joined members
"""

import http.client
import json
import os
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
HEADERS = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}


def request(conn, method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=HEADERS)
    resp = conn.getresponse()
    return resp.status, resp.read()


def connection():
    return http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)


def users(prefix, n):
    ids = [f"@{prefix}{i}:localhost" for i in range(n)]

    def create(chunk):
        conn = connection()
        for uid in chunk:
            status, body = request(conn, "PUT", "/_synapse/admin/v2/users/" + urllib.parse.quote(uid), {})
            if status not in (200, 201):
                raise SystemExit(f"creating {uid}: {status} {body[:200]!r}")
        conn.close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, [ids[i::16] for i in range(16)]))
    print("\n".join(ids))


def seq(room_id, path):
    conn = connection()
    join = "/_synapse/admin/v1/join/" + urllib.parse.quote(room_id, safe="")
    ok = failed = 0
    with open(path) as f:
        for uid in filter(None, map(str.strip, f)):
            status, _ = request(conn, "POST", join, {"user_id": uid})
            ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
    print(ok, failed)


def members(room_id):
    status, body = request(connection(), "GET",
                           f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room_id, safe='')}/members")
    assert status == 200, (status, body)
    print(json.loads(body)["total"])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"users": lambda p, n: users(p, int(n)), "seq": seq, "members": members}[cmd](*args)
