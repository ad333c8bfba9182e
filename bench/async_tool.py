#!/usr/bin/env python3
"""The script an admin would write instead of synbatch: asyncio, N workers, each on its own
keep-alive connection, taking rows from one queue; a 429 is waited out as the server says
(retry_after_ms) and tried again. Standard library only. Traffic only to the harness's
127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    async_tool.py join   CSV [-j 16] [--order interleave|file]
        POST /_synapse/admin/v1/join/<room> {"user_id"} for each `user,room` row
    async_tool.py invite CSV [-j 16] [--order interleave|file] [--lift]
        POST /_matrix/client/v3/rooms/<room>/invite {"user_id"} as the token's user; --lift
        sets its override_ratelimit to 0/0 for the run and puts the previous value back

--order interleave (the default) takes the rooms in turn (room A, B, C, A, B, C, ...);
--order file keeps the file's order. Prints "ok failed 429s".
"""

import argparse
import asyncio
import csv
import json
import os
import urllib.parse
from collections import OrderedDict, deque

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
TOKEN = os.environ["TOKEN"]


class Conn:
    def __init__(self):
        self.reader = self.writer = None

    async def call(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(URL.hostname, URL.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {URL.netloc}\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n")
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while True:
            line = (await self.reader.readline()).decode().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            payload = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                payload += chunk[:-2]
        else:
            payload = await self.reader.readexactly(length)
        return status, json.loads(payload or b"{}")


def rows_in(path, order):
    with open(path, newline="") as f:
        rows = [(r["user"], r["room"]) for r in csv.DictReader(f)]
    if order == "file":
        return rows
    by_room = OrderedDict()
    for user, room in rows:
        by_room.setdefault(room, deque()).append((user, room))
    out = []
    while by_room:
        for room in list(by_room):
            out.append(by_room[room].popleft())
            if not by_room[room]:
                del by_room[room]
    return out


async def run(kind, path, workers, order, lift):
    queue = deque(rows_in(path, order))
    counts = {"ok": 0, "failed": 0, "limited": 0}
    q = urllib.parse.quote

    async def worker():
        conn = Conn()
        while queue:
            user, room = queue.popleft()
            if kind == "join":
                target = f"/_synapse/admin/v1/join/{q(room, safe='')}"
            else:
                target = f"/_matrix/client/v3/rooms/{q(room, safe='')}/invite"
            while True:
                status, body = await conn.call("POST", target, {"user_id": user})
                if status != 429:
                    break
                counts["limited"] += 1
                await asyncio.sleep(body.get("retry_after_ms", 1000) / 1000)
            counts["ok" if status == 200 else "failed"] += 1

    admin = Conn()
    previous = None
    if lift:
        _, me = await admin.call("GET", "/_matrix/client/v3/account/whoami")
        limit = f"/_synapse/admin/v1/users/{q(me['user_id'], safe='')}/override_ratelimit"
        _, previous = await admin.call("GET", limit)
        await admin.call("POST", limit, {"messages_per_second": 0, "burst_count": 0})
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        if lift:
            if previous:
                await admin.call("POST", limit, previous)
            else:
                await admin.call("DELETE", limit)
    print(counts["ok"], counts["failed"], counts["limited"])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["join", "invite"])
    p.add_argument("csv")
    p.add_argument("-j", type=int, default=16)
    p.add_argument("--order", choices=["interleave", "file"], default="interleave")
    p.add_argument("--lift", action="store_true")
    a = p.parse_args()
    asyncio.run(run(a.kind, a.csv, a.j, a.order, a.lift))
