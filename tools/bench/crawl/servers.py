"""The loopback servers of tools/bench-crawl: one private nginx and the tarpits.

nginx (own config, prefix and pid file in the temp dir) serves
  - for each latency L of the politeness test, HOSTS ports (each a host to webspool,
    whose host key is host:port) answering /s/*.html with a small generated HTML page
    after L ms (`echo_sleep` of the echo module), /robots.txt with a 404;
  - SITE_PORTS ports serving the static site of the memory test (one directory).
The tarpits are tools/bench/crawl/tarpit.py, one asyncio process.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# Filler text of the generated pages: about 1.5 KB of prose, so each page is a few KB
# of HTML like a small real page, not a 3-byte body.
PROSE = (
    "The crawler keeps every page it fetches in a local journal, one transaction per "
    "group of pages, and only counts a page once the flush that holds it returned. "
    "Hosts take turns, each within its own limit, so that one slow site never holds "
    "up the others, and a host that stops answering is backed off and then left alone. "
)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound and released; nginx binds them next)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def echo_page():
    """The body nginx's echo module sends for /s/N.html (nginx variables expanded)."""
    links = "".join(f'<li><a href="/s/{k}.html">page {k}</a></li>' for k in range(10))
    text = "".join(f"<p>{PROSE}</p>" for _ in range(4))
    html = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Page $uri on $server_port</title>"
        "<meta name=\"description\" content=\"A generated page for tools/bench-crawl\"></head>"
        f"<body><h1>$uri</h1>{text}<ul>{links}</ul></body></html>"
    )
    # An nginx string literal in single quotes: escape backslashes and quotes.
    return "'" + html.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_site(root, pages, ports, fanout, seed=1):
    """The memory test's site: page i at http://127.0.0.1:ports[i % len(ports)]/p/i.html.

    Page i links to its children fanout*i+1 .. fanout*i+fanout (a tree, so every page is
    reachable from page 0), to its parent and page 0, and to 3 random pages (already
    seen ones mostly: work for the dedup); about 2 KB each.
    """
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "p"), exist_ok=True)

    def url(i):
        return f"http://127.0.0.1:{ports[i % len(ports)]}/p/{i}.html"

    for i in range(pages):
        targets = [c for c in range(fanout * i + 1, fanout * i + fanout + 1) if c < pages]
        targets += [max((i - 1) // fanout, 0), 0]
        targets += [rng.randrange(pages) for _ in range(3)]
        links = "".join(f'<li><a href="{url(t)}">page {t}</a></li>' for t in targets)
        body = (
            f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Site page {i}</title>"
            f"</head><body><h1>Page {i}</h1><p>{PROSE}</p><p>{PROSE}</p>"
            f"<ul>{links}</ul></body></html>\n"
        )
        with open(os.path.join(root, "p", f"{i}.html"), "w") as f:
            f.write(body)
    return url(0)


class Nginx:
    def __init__(self, tmp, latency_ports, site_root, site_ports):
        """latency_ports: {latency_ms: [ports]}."""
        self.prefix = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.error_log = os.path.join(self.prefix, "logs", "error.log")
        servers = []
        page = echo_page()
        for latency, ports in latency_ports.items():
            listens = "".join(f"        listen 127.0.0.1:{p};\n" for p in ports)
            sleep = f"echo_sleep {latency / 1000:.3f};" if latency > 0 else ""
            servers.append(
                f"    server {{\n{listens}"
                f"        location /s/ {{ default_type text/html; {sleep} echo {page}; }}\n"
                f"        location / {{ return 404; }}\n    }}\n"
            )
        listens = "".join(f"        listen 127.0.0.1:{p};\n" for p in site_ports)
        servers.append(f"    server {{\n{listens}        root {site_root};\n    }}\n")
        t = os.path.join(self.prefix, "tmp")
        user = "user root;\n" if os.getuid() == 0 else ""
        with open(self.conf, "w") as f:
            f.write(
                "# Written by tools/bench-crawl; serves only 127.0.0.1.\n"
                "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;\n"
                f"{user}worker_processes 2;\ndaemon off;\n"
                f"pid {self.prefix}/nginx.pid;\nerror_log {self.error_log} warn;\n"
                "events { worker_connections 4096; }\n"
                "http {\n    access_log off;\n    sendfile on;\n    tcp_nodelay on;\n"
                "    keepalive_timeout 120s;\n    keepalive_requests 1000000;\n    gzip off;\n"
                "    types { text/html html; }\n    default_type application/octet-stream;\n"
                f"    client_body_temp_path {t}/body;\n    proxy_temp_path {t}/proxy;\n"
                f"    fastcgi_temp_path {t}/fastcgi;\n    uwsgi_temp_path {t}/uwsgi;\n"
                f"    scgi_temp_path {t}/scgi;\n" + "".join(servers) + "}\n"
            )
        self.proc = None

    def start(self, binary, probe_url):
        test = subprocess.run(
            [binary, "-t", "-q", "-p", self.prefix, "-c", self.conf], capture_output=True, text=True
        )
        if test.returncode != 0:
            sys.exit(f"FAILED: nginx rejects its config: {test.stderr.strip()}")
        with open(self.error_log, "ab") as err:
            self.proc = subprocess.Popen([binary, "-p", self.prefix, "-c", self.conf], stderr=err)
        wait_http(probe_url, self.proc, "nginx")

    def stop(self):
        stop(self.proc, signal.SIGQUIT)

    def problems(self):
        """Lines of the error log worse than a warning (e.g. EMFILE)."""
        with open(self.error_log, errors="replace") as f:
            return [line.strip() for line in f if any(w in line for w in ("[crit]", "[alert]", "[emerg]"))]


class Tarpits:
    def __init__(self, tmp, modes):
        self.port_file = os.path.join(tmp, "tarpits.ports")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "tarpit.py"), self.port_file, *modes]
        )
        for _ in range(100):
            if os.path.exists(self.port_file) or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(self.port_file):
            sys.exit("FAILED: the tarpit server did not start")
        with open(self.port_file) as f:
            self.ports = [(int(p), m) for p, m in (line.split() for line in f)]

    def stop(self):
        stop(self.proc, signal.SIGTERM)


def wait_http(url, proc, name):
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"FAILED: {name} exited")
            time.sleep(0.1)
    sys.exit(f"FAILED: {name} does not answer {url}")


def stop(proc, sig):
    """Stops a server this script started (by its pid), SIGKILL after 5 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
