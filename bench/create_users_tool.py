#!/usr/bin/env python3
"""Baselines for bench/create_users.sh (standard library only). Traffic only to the harness's
127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    create_users_tool.py seq PREFIX N        PUT /_synapse/admin/v2/users/@PREFIXi (displayname,
                                             password) one at a time on one keep-alive connection
    create_users_tool.py asyncio PREFIX N C  the same from C asyncio tasks, each with its own
                                             keep-alive connection (a hand-written HTTP/1.1
                                             client: aiohttp is not in the standard library)
Both print "created failed".
"""

import asyncio
import http.client
import json
import os
import sys
import urllib.parse

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
TOKEN = os.environ["TOKEN"]


def body(uid):
    return json.dumps({"displayname": f"Bench {uid}", "password": "Bench-pw-1234"})


def path(uid):
    return "/_synapse/admin/v2/users/" + urllib.parse.quote(uid, safe="")


def seq(prefix, n):
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
    headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    created = failed = 0
    for i in range(n):
        uid = f"@{prefix}{i}:localhost"
        conn.request("PUT", path(uid), body=body(uid), headers=headers)
        resp = conn.getresponse()
        resp.read()
        created, failed = (created + 1, failed) if resp.status == 201 else (created, failed + 1)
    print(created, failed)


async def worker(queue, counts):
    reader, writer = await asyncio.open_connection(URL.hostname, URL.port)
    while True:
        try:
            uid = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        data = body(uid).encode()
        writer.write(
            (f"PUT {path(uid)} HTTP/1.1\r\nHost: {URL.hostname}\r\n"
             f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length, chunked = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                chunked = "chunked" in value.lower()
        if chunked:  # Synapse sends JSON bodies chunked
            while (size := int((await reader.readline()).strip(), 16)) > 0:
                await reader.readexactly(size + 2)
            await reader.readline()
        else:
            await reader.readexactly(length)
        counts[0 if status == 201 else 1] += 1
    writer.close()


async def run_async(prefix, n, c):
    queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(f"@{prefix}{i}:localhost")
    counts = [0, 0]
    await asyncio.gather(*(worker(queue, counts) for _ in range(c)))
    print(*counts)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "seq":
        seq(sys.argv[2], int(sys.argv[3]))
    elif cmd == "asyncio":
        asyncio.run(run_async(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        raise SystemExit(__doc__)
