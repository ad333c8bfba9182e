#!/usr/bin/env python3
"""Baseline for bench/create_rooms.sh (standard library only). Traffic only to the harness's
127.0.0.1 Synapse. Reads URL and TOKEN from the environment.

    create_rooms_tool.py asyncio PREFIX N C   N rooms from C asyncio tasks, each with its own
                                              keep-alive connection: POST createRoom (alias
                                              PREFIXi, name, topic, private preset), then for
                                              every other room PUT directory/list/room/<id>
                                              public, the work of `synbatch create-rooms` on the
                                              same sheet (without its existence check and read-
                                              back, which the script skips)
Prints "created failed". A 429 is waited out (Retry-After) and the request sent again.
"""

import asyncio
import json
import os
import sys
import urllib.parse

URL = urllib.parse.urlsplit(os.environ["URL"])
assert URL.hostname in ("127.0.0.1", "localhost"), "only a local Synapse"
TOKEN = os.environ["TOKEN"]


async def request(reader, writer, method, path, body):
    """One request on a keep-alive connection; returns (status, json body, retry-after)."""
    data = json.dumps(body).encode()
    writer.write(
        (f"{method} {path} HTTP/1.1\r\nHost: {URL.hostname}\r\n"
         f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length, chunked, retry = 0, False, 1.0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        name = name.lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "retry-after":
            retry = float(value)
    raw = b""
    if chunked:  # Synapse sends JSON bodies chunked
        while (size := int((await reader.readline()).strip(), 16)) > 0:
            raw += (await reader.readexactly(size + 2))[:-2]
        await reader.readline()
    else:
        raw = await reader.readexactly(length)
    return status, (json.loads(raw) if raw else {}), retry


async def call(reader, writer, method, path, body):
    while True:
        status, answer, retry = await request(reader, writer, method, path, body)
        if status != 429:
            return status, answer
        await asyncio.sleep(retry)


async def worker(queue, counts):
    reader, writer = await asyncio.open_connection(URL.hostname, URL.port)
    while True:
        try:
            i, alias = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        body = {"room_alias_name": alias, "name": f"Room {i}", "topic": f"Topic {i}",
                "preset": "private_chat", "visibility": "private"}
        status, answer = await call(reader, writer, "POST", "/_matrix/client/v3/createRoom", body)
        ok = status == 200
        if ok and i % 2 == 0:
            path = "/_matrix/client/v3/directory/list/room/" + urllib.parse.quote(answer["room_id"], safe="")
            status, _ = await call(reader, writer, "PUT", path, {"visibility": "public"})
            ok = status == 200
        counts[0 if ok else 1] += 1
    writer.close()


async def run_async(prefix, n, c):
    queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait((i, f"{prefix}{i}"))
    counts = [0, 0]
    await asyncio.gather(*(worker(queue, counts) for _ in range(c)))
    print(*counts)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "asyncio":
        raise SystemExit(__doc__)
    asyncio.run(run_async(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
