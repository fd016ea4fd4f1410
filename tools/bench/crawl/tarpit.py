#!/usr/bin/env python3
"""Tarpit HTTP servers on 127.0.0.1 for tools/bench-crawl: they accept and never answer.

Usage: tarpit.py PORTFILE MODE [MODE ...]

Listens on one free loopback port per MODE and writes "PORT MODE" lines to PORTFILE
once all are listening; serves until killed. Modes (what a request gets):

  silent         nothing, ever: the connection stays open (idle timeout on the client)
  trickle-head   the status line and headers one byte every TRICKLE s, never finished
  trickle-body   complete headers (Content-Length 1 MB), then one body byte every
                 TRICKLE s (only the client's total deadline ends it)
  silent-robots  like silent, for /robots.txt too

Except in silent-robots, /robots.txt is answered at once with a 404 (allow all), so a
crawler that obeys robots.txt goes on to request pages, which is where the tarpit bites.
Uses only the standard library (asyncio), so it costs next to no CPU however many
connections it holds.
"""
import asyncio
import os
import sys

TRICKLE = 1.0
MODES = ("silent", "trickle-head", "trickle-body", "silent-robots")
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def handle(mode, reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b" ", 2)
            path = parts[1] if len(parts) > 1 else b""
            if path == b"/robots.txt" and mode != "silent-robots":
                writer.write(NOT_FOUND)
                await writer.drain()
                continue
            if mode == "trickle-head":
                for byte in HEAD[:-2]:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(TRICKLE)
            elif mode == "trickle-body":
                writer.write(HEAD)
                while True:
                    await writer.drain()
                    await asyncio.sleep(TRICKLE)
                    writer.write(b"x")
            # silent, or the trickle ran out: hold the connection until the client goes.
            await reader.read()
            return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    port_file, modes = sys.argv[1], sys.argv[2:]
    if not modes or any(m not in MODES for m in modes):
        sys.exit(f"usage: tarpit.py PORTFILE MODE...; modes: {' '.join(MODES)}")
    servers, lines = [], []
    for mode in modes:
        server = await asyncio.start_server(
            lambda r, w, m=mode: handle(m, r, w), "127.0.0.1", 0, backlog=1024
        )
        servers.append(server)
        lines.append(f"{server.sockets[0].getsockname()[1]} {mode}\n")
    with open(port_file + ".tmp", "w") as f:
        f.writelines(lines)
    os.replace(port_file + ".tmp", port_file)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
