#!/usr/bin/env python3
"""Helpers and the two baseline scripts for bench/sso_sweep.sh (standard library only).
Traffic only to the bench's 127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    sso_tool.py setup N          create or reset @bsso0..N-1:localhost, each with two mappings
                                 (oidc-old:old-i, saml-keep:keep-i); 16 threads; not timed
    sso_tool.py seq PROVIDER     the guide's sweep, one request at a time on one keep-alive
                                 connection: list every page, GET each user, PUT the rest of its
                                 external_ids when PROVIDER is among them; prints "users puts"
    sso_tool.py pool PROVIDER T  the same sweep with a pool of T threads (one connection each)
                                 for the GET+PUT of each user; prints "users puts"
    sso_tool.py verify N         checks that every @bsso user has exactly [saml-keep:keep-i]
    sso_tool.py more FROM TO     creates plain accounts @bexp<FROM..TO-1> (16 threads)
    sso_tool.py total            prints the server's account total
"""

import http.client
import json
import os
import sys
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
HEADERS = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}
USERS = "/_synapse/admin/v2/users"
_local = threading.local()


def connection():
    return http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)


def request(conn, method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, (json.loads(data) if data else None)


def thread_conn():
    if not hasattr(_local, "conn"):
        _local.conn = connection()
    return _local.conn


def user_path(uid):
    return USERS + "/" + urllib.parse.quote(uid)


def in_threads(fn, items, threads=16):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def setup(n):
    def put(i):
        uid = f"@bsso{i}:localhost"
        ids = [{"auth_provider": "oidc-old", "external_id": f"old-{i}"},
               {"auth_provider": "saml-keep", "external_id": f"keep-{i}"}]
        status, body = request(thread_conn(), "PUT", user_path(uid), {"external_ids": ids})
        assert status in (200, 201), (uid, status, body)
    in_threads(put, range(n))


def all_users(conn):
    """Every page of the list, as the guide does (default page size 100)."""
    users, token = [], "0"
    while token is not None:
        status, page = request(conn, "GET", f"{USERS}?from={token}&limit=100")
        assert status == 200, (status, page)
        users += [u["name"] for u in page["users"]]
        token = page.get("next_token")
    return users


def sweep_one(conn, uid, provider):
    status, user = request(conn, "GET", user_path(uid))
    assert status == 200, (uid, status, user)
    ids = user.get("external_ids", [])
    keep = [m for m in ids if m["auth_provider"] != provider]
    if len(keep) == len(ids):
        return 0
    status, body = request(conn, "PUT", user_path(uid), {"external_ids": keep})
    assert status == 200, (uid, status, body)
    return 1


def seq(provider):
    conn = connection()
    users = all_users(conn)
    puts = sum(sweep_one(conn, uid, provider) for uid in users)
    print(len(users), puts)


def pool(provider, threads):
    users = all_users(connection())
    puts = sum(in_threads(lambda uid: sweep_one(thread_conn(), uid, provider), users, threads))
    print(len(users), puts)


def verify(n):
    def check(i):
        status, user = request(thread_conn(), "GET", user_path(f"@bsso{i}:localhost"))
        ids = [(m["auth_provider"], m["external_id"]) for m in user["external_ids"]]
        return ids == [("saml-keep", f"keep-{i}")]
    bad = in_threads(check, range(n)).count(False)
    if bad:
        raise SystemExit(f"{bad} of {n} users do not have exactly their saml-keep mapping")


def more(start, end):
    def put(i):
        status, body = request(thread_conn(), "PUT", user_path(f"@bexp{i}:localhost"), {})
        assert status in (200, 201), (i, status, body)
    in_threads(put, range(start, end))


def total():
    print(request(connection(), "GET", f"{USERS}?limit=1")[1]["total"])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"setup": lambda n: setup(int(n)), "seq": seq, "pool": lambda p, t: pool(p, int(t)),
     "verify": lambda n: verify(int(n)), "more": lambda a, b: more(int(a), int(b)),
     "total": total}[cmd](*args)
