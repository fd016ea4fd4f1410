#!/usr/bin/env python3
"""Serves a directory on 127.0.0.1 for the webspool demo.

Usage: serve-site.py DIR PORTFILE [PORT]
Listens on PORT (default 0: any free port), writes the port chosen to PORTFILE once
listening, and serves until killed. The site's sitemaps and feeds (.xml files) name
their pages as http://localhost/...; they are served with the address the request
was sent to in its place (http://127.0.0.1:PORT/...), so that `webspool crawl
--sitemap http://127.0.0.1:PORT/sitemap.xml` reaches the pages it lists.
Uses only the standard library, so the demo needs nothing installed.
"""
import functools
import http.server
import os
import sys

PLACEHOLDER = b"http://localhost/"


def main():
    root, port_file = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.translate_path(self.path)
            if not path.endswith(".xml") or not os.path.isfile(path):
                return super().do_GET()
            host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
            with open(path, "rb") as f:
                body = f.read().replace(PLACEHOLDER, b"http://%s/" % host.encode("ascii", "replace"))
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    handler = functools.partial(Handler, directory=root)

    class Server(http.server.ThreadingHTTPServer):
        # The default backlog of 5 drops connections under webspool's concurrency.
        request_queue_size = 256
        daemon_threads = True

    server = Server(("127.0.0.1", port), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
