#!/usr/bin/env python3
"""Serves a directory on 127.0.0.1 (port 0 = any free port) for the webspool demo.

Usage: serve-site.py DIR PORTFILE
Writes the chosen port to PORTFILE once listening; serves until killed.
Uses only the standard library, so the demo needs nothing installed.
"""
import functools
import http.server
import os
import sys


def main():
    root, port_file = sys.argv[1], sys.argv[2]
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=root)
    class Server(http.server.ThreadingHTTPServer):
        # The default backlog of 5 drops connections under webspool's concurrency.
        request_queue_size = 256
        daemon_threads = True

    server = Server(("127.0.0.1", 0), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
