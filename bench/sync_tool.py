#!/usr/bin/env python3
"""Helpers for bench/sync_members.sh (standard library only). Traffic only to the harness's
127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    sync_tool.py setup TAG ROOMS WANTED STAY EXTRA DIR
        creates ROOMS private rooms (#TAG-rN) and WANTED + EXTRA users; joins the first STAY
        wanted users and the EXTRA others to every room (admin joins, 16 threads); writes
        DIR/sheet.csv (user,room: the WANTED users in every room) and DIR/rooms (room ids)
    sync_tool.py export-diff DIR
        the hand-written way: reads each room's members (admin API), diffs them with
        DIR/sheet.csv, writes DIR/join.csv and DIR/kick.csv (user,room); prints the counts
    sync_tool.py check DIR
        every room has exactly the sheet's users and the admin; prints "ok" or exits 1
"""

import csv
import http.client
import json
import os
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
HEADERS = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}
q = lambda s: urllib.parse.quote(s, safe="")


def request(conn, method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=HEADERS)
    resp = conn.getresponse()
    return resp.status, resp.read()


def connection():
    return http.client.HTTPConnection(URL.hostname, URL.port, timeout=120)


def pooled(work, items):
    def run(chunk):
        conn = connection()
        for item in chunk:
            work(conn, item)
        conn.close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(run, [items[i::16] for i in range(16)]))


def setup(tag, rooms, wanted, stay, extra, out):
    rooms, wanted, stay, extra = int(rooms), int(wanted), int(stay), int(extra)
    users = [f"@{tag}u{i}:localhost" for i in range(wanted + extra)]

    def create(conn, uid):
        status, body = request(conn, "PUT", "/_synapse/admin/v2/users/" + q(uid), {})
        if status not in (200, 201):
            raise SystemExit(f"creating {uid}: {status} {body[:200]!r}")

    pooled(create, users)
    conn = connection()
    ids = []
    for r in range(rooms):
        status, body = request(conn, "POST", "/_matrix/client/v3/createRoom",
                               {"preset": "private_chat", "room_alias_name": f"{tag}-r{r}"})
        assert status == 200, (status, body)
        ids.append(json.loads(body)["room_id"])
    members = users[:stay] + users[wanted:]

    def join(conn, pair):
        room, uid = pair
        status, body = request(conn, "POST", "/_synapse/admin/v1/join/" + q(room), {"user_id": uid})
        if status != 200:
            raise SystemExit(f"joining {uid}: {status} {body[:200]!r}")

    pooled(join, [(room, uid) for uid in members for room in ids])
    with open(os.path.join(out, "sheet.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "room"])
        for room in ids:
            for uid in users[:wanted]:
                w.writerow([uid, room])
    with open(os.path.join(out, "rooms"), "w") as f:
        f.write("\n".join(ids) + "\n")


def sheet(out):
    want = {}
    with open(os.path.join(out, "sheet.csv"), newline="") as f:
        for row in csv.DictReader(f):
            want.setdefault(row["room"], set()).add(row["user"])
    return want


def members(conn, room):
    status, body = request(conn, "GET", f"/_synapse/admin/v1/rooms/{q(room)}/members")
    assert status == 200, (status, body)
    return set(json.loads(body)["members"])


def whoami(conn):
    status, body = request(conn, "GET", "/_matrix/client/v3/account/whoami")
    assert status == 200, (status, body)
    return json.loads(body)["user_id"]


def export_diff(out):
    conn = connection()
    me = whoami(conn)
    joins, kicks = [], []
    for room, want in sheet(out).items():
        have = members(conn, room)
        joins += [(u, room) for u in sorted(want - have)]
        kicks += [(u, room) for u in sorted(have - want - {me})]
    for name, rows in (("join.csv", joins), ("kick.csv", kicks)):
        with open(os.path.join(out, name), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user", "room"])
            w.writerows(rows)
    print(len(joins), len(kicks))


def check(out):
    conn = connection()
    me = whoami(conn)
    for room, want in sheet(out).items():
        have = members(conn, room)
        if have != want | {me}:
            raise SystemExit(f"{room}: {len(have - want - {me})} extra, {len(want - have)} missing")
    print("ok")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"setup": setup, "export-diff": export_diff, "check": check}[cmd](*args)
