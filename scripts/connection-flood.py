#!/usr/bin/env python3
"""A connection flood, for measuring what memory a server keeps after one.

Opens CONNECTIONS connections at once (half HTTP/1.1, half HTTP/2 with STREAMS streams
each), has every one of them ask for PATH and read its answers, holds them all open
until the last has been answered, then closes them all. Standard library only.

    scripts/connection-flood.py 127.0.0.1:8080 [connections] [streams] [path]

Prints how many requests were answered. scripts/rss-after-flood.sh reads the server's
resident memory around it.
"""

import asyncio
import resource
import struct
import sys


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_requests(path, streams):
    # GET (static 2), http (static 6), :path as a literal with indexed name (4).
    block = bytes([0x82, 0x86, 0x04, len(path)]) + path.encode()
    hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0) + frame(0x4, 0x1, 0)
    # END_STREAM | END_HEADERS on streams 1, 3, 5, ...
    return hello + b"".join(frame(0x1, 0x5, 2 * i + 1, block) for i in range(streams))


async def one(host, port, http2, path, streams, answered, all_open):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    try:
        if http2:
            writer.write(h2_requests(path, streams))
            want = streams
        else:
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            want = 1
        await writer.drain()
        buffer, seen = b"", 0
        while seen < want:
            chunk = await asyncio.wait_for(reader.read(65536), 30)
            if not chunk:
                break
            buffer += chunk
            if not http2:
                seen = 1 if buffer.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in buffer else 0
                continue
            # Count response HEADERS frames (type 1) on our streams (odd ids).
            seen = 0
            rest = buffer
            offset = 0
            while len(rest) - offset >= 9:
                length = int.from_bytes(rest[offset:offset + 3], "big")
                kind = rest[offset + 3]
                stream = int.from_bytes(rest[offset + 5:offset + 9], "big") & 0x7FFFFFFF
                if kind == 0x1 and stream % 2 == 1:
                    seen += 1
                offset += 9 + length
        answered[0] += seen
        await all_open.wait()
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def main():
    target = sys.argv[1]
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    streams = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    path = sys.argv[4] if len(sys.argv) > 4 else "/healthz"
    host, port = target.rsplit(":", 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    answered = [0]
    all_open = asyncio.Event()
    tasks = [
        asyncio.create_task(one(host, int(port), i % 2 == 1, path, streams, answered, all_open))
        for i in range(connections)
    ]
    # Everyone connects and is answered, then all close together.
    await asyncio.sleep(0)
    while sum(1 for t in tasks if not t.done()) and answered[0] < connections // 2 * (1 + streams) * 0.9:
        await asyncio.sleep(0.2)
        if all(t.done() for t in tasks):
            break
    print(f"answered {answered[0]} requests on {connections} connections", flush=True)
    if len(sys.argv) > 5:
        await asyncio.sleep(float(sys.argv[5]))
    all_open.set()
    await asyncio.gather(*tasks)


asyncio.run(main())
