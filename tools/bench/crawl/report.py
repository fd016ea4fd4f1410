"""Log parsing and the BENCHMARKS.md section of tools/bench-crawl."""
import bisect
import datetime
import os
import platform
import re
import statistics
import subprocess
import time

from measure import NPROC

SECTION = "## Crawl politeness and memory (tools/bench-crawl)"
# `webspool::committed` debug lines: written only after the flush that holds the page.
COMMITTED = re.compile(r"^(\S+)\s+DEBUG webspool::committed: (fetched|failed|retry in \d+ ms:) https?://[^/:]+:(\d+)/")


def committed(log):
    """(unix time, "fetched" | "failed" | "retry", port) of each committed fetch in a log."""
    out = []
    with open(log, errors="replace") as f:
        for line in f:
            m = COMMITTED.match(line)
            if m:
                at = datetime.datetime.fromisoformat(m.group(1)).timestamp()
                outcome = m.group(2) if not m.group(2).startswith("retry") else "retry"
                out.append((at, outcome, m.group(3)))
    return out


def trap_summary(commits, normal_ports, t0, st):
    """What became of the tarpit URLs in one crawl."""
    trap = [(t, o) for t, o, p in commits if p not in normal_ports]
    failed = [t for t, o in trap if o == "failed"]
    return {
        "failed": len(failed),
        "retries": sum(1 for _, o in trap if o == "retry"),
        "last": (max(failed) - t0) if failed else None,
        "errors": st.get("errors", {}),
        "pending": st.get("pending_fetch", 0),
    }


def count(log, text):
    with open(log, errors="replace") as f:
        return sum(1 for line in f if text in line)


def tail(log, n=5):
    with open(log, errors="replace") as f:
        return " | ".join(f.read().strip().splitlines()[-n:])


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def fs_type(path):
    out = subprocess.run(["df", "-PT", path], capture_output=True, text=True).stdout.splitlines()
    return out[1].split()[1] if len(out) > 1 else "unknown"


def med(values):
    return statistics.median(values) if values else float("nan")


def machine(c):
    mem = cpu = ""
    with open("/proc/meminfo") as f:
        mem = next((line.split()[1] for line in f if line.startswith("MemTotal:")), "0")
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    return (f"{NPROC} CPUs ({cpu}), {int(mem) // 1024} MB memory, Linux {platform.release()}; "
            f"journals on {c['fs']} ({c['BENCH_TMPDIR']})")


def section(c, polite, mem, trap_ports, nginx_bin, targets):
    target_ratio, target_pages, target_rss = targets
    nginx_v = subprocess.run([nginx_bin, "-v"], capture_output=True, text=True).stderr.strip()
    flags = (f"--concurrency {c['CONCURRENCY']} --per-host {c['PER_HOST']} --timeout {c['TIMEOUT']} --quiet"
             + (f" {c['WEBSPOOL_ARGS']}" if c["WEBSPOOL_ARGS"] else ""))
    out = [SECTION, "",
           f"Command: `{c['given'] + ' ' if c['given'] else ''}tools/bench-crawl`.", "",
           f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; webspool {c['rev']}",
           f"- Machine: {machine(c)}",
           f"- Servers on 127.0.0.1, same machine: {nginx_v.replace('nginx version: ', '')} (2 workers, keep-alive, "
           "echo module for the latency) and tools/bench/crawl/tarpit.py (asyncio); robots.txt obeyed "
           "(404 on every host but silent-robots)",
           f"- webspool: `webspool crawl --urls list --journal fresh-dir {flags}` (robots.txt obeyed; "
           "other flags at their defaults: --idle-timeout 15, --connect-timeout 10, --retries 3)",
           "- CPU s: webspool (rusage), the servers (nginx + tarpits, /proc) and everything else on the "
           "machine (\"other\"); busy% is the machine's load just before the run", ""]
    if polite:
        out += politeness_part(c, polite, trap_ports, target_ratio)
    if mem:
        out += memory_part(c, mem, target_pages, target_rss)
    return "\n".join(out).rstrip() + "\n"


def politeness_part(c, polite, trap_ports, target_ratio):
    n = c["HOSTS"] * c["PAGES_PER_HOST"]
    modes = ", ".join(m for _, m in trap_ports)
    out = ["### Tarpits among many hosts", "",
           f"{c['HOSTS']} normal hosts (ports) x {c['PAGES_PER_HOST']} pages = {n} pages of ~2 KB, crawled alone "
           f"(clean) and with {len(trap_ports)} tarpit hosts ({modes}) of {c['PAGES_PER_HOST']} URLs each, listed "
           "before the normal URLs (first) or interleaved with them (mixed). Throughput: normal pages / seconds "
           "from the start of the process to the commit of the last normal page. \"end\": when the whole crawl "
           "ended (the tarpit URLs decided). CPU s: up to the last normal page (the log read 4 times a second); \"-\": killed once the last normal page was committed (rounds after "
           f"FULL_ROUNDS={c['FULL_ROUNDS']}), \"+\": interrupted at RUN_LIMIT={c['RUN_LIMIT']} s.", ""]
    for lat, rows in polite.items():
        out += [f"Normal hosts answering after **{lat} ms**:", "",
                "| round | clean pages/s | first pages/s | first/clean | mixed pages/s | mixed/clean "
                "| end s (clean / first / mixed) | webspool CPU s (c / f / m) | other CPU s (c / f / m) | busy% before |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        ratios = {"first": [], "mixed": []}
        for r, row in enumerate(rows, 1):
            cl, fi, mx = row["clean"], row["first"], row["mixed"]
            for v in ratios:
                ratios[v].append(row[v].pps / cl.pps)

            def mark(run):
                return "*" if run.disturbed else ""

            def end(run):
                return {None: f"{run.secs:.1f}", "killed once done": "-"}.get(run.stopped, f"{run.secs:.1f}+")

            out.append(
                f"| {r} | {cl.pps:.0f}{mark(cl)} | {fi.pps:.0f}{mark(fi)} | {fi.pps / cl.pps:.3f} | {mx.pps:.0f}{mark(mx)} "
                f"| {mx.pps / cl.pps:.3f} | {end(cl)} / {end(fi)} / {end(mx)} | {cl.w_cpu:.1f} / {fi.w_cpu:.1f} / {mx.w_cpu:.1f} "
                f"| {cl.w_other_cpu:.1f} / {fi.w_other_cpu:.1f} / {mx.w_other_cpu:.1f} | {cl.busy_before} / {fi.busy_before} / {mx.busy_before} |")
        out.append("")
        for v, rs in ratios.items():
            m = med(rs)
            verdict = "met" if m >= target_ratio else "**NOT met**"
            out.append(f"- {v}/clean, median of the rounds: **{m:.3f}x** (target >= {target_ratio}x): {verdict}")
        fi = rows[0]["first"]
        t = fi.trap
        errors = ", ".join(f"{k} {v}" for k, v in sorted(t["errors"].items())) or "none"
        last = f"{t['last']:.1f} s" if t["last"] is not None else "never"
        out.append(f"- Tarpit URLs in round 1 (first): {t['failed']} failed ({errors}), {t['pending']} still pending, "
                   f"{t['retries']} retries scheduled, {fi.down} host(s) taken for down; the last one decided at {last}")
        out.append("")
    if any(run.disturbed for rows in polite.values() for row in rows for run in row.values()):
        out += [f"\\* other processes took more than {c['DISTURBED_PCT']} % of the machine's CPU during this run, "
                "even after retries: treat it with caution.", ""]
    return out


def memory_part(c, mem, target_pages, target_rss):
    samples, commits = mem.samples, mem.commits
    pages_at = [bisect.bisect_right(commits, s[0]) for s in samples]
    peak_kb = max([mem.maxrss_kb] + [s[2] for s in samples])
    peak = peak_kb / 1024
    marks = list(range(10000, len(commits) + 1, 10000))
    rows = []
    for mark in marks:
        k = next((i for i, p in enumerate(pages_at) if p >= mark), None)
        if k is not None:
            s = samples[k]
            rows.append((pages_at[k], s[0], s[1] / 1024, s[3] / 1e6))
    last = samples[-1] if samples else (0, 0, 0, 0)
    rows.append((pages_at[-1] if pages_at else 0, last[0], last[1] / 1024, last[3] / 1e6))
    first_rss, end_rss = rows[0][2], max(r[2] for r in rows[1:] or rows)
    flat = end_rss - first_rss <= 16 or end_rss <= first_rss * 1.2
    st = mem.status
    out = ["### Memory of a link-following crawl", "",
           f"A static site of {c['SITE_PAGES']} pages (~2 KB, nginx) over {c['SITE_PORTS']} ports, a tree of fan-out 4 "
           "plus links to the parent, the root and 3 random pages, crawled from its root page with "
           "`--follow same-host --allow-private` (same-host ignores ports). One run; VmRSS sampled every "
           "second, with the pages committed by then.", "",
           "| pages committed | s | VmRSS MB | journal on disk MB |", "| ---: | ---: | ---: | ---: |"]
    out += [f"| {p} | {s:.0f} | {r:.1f} | {j:.0f} |" for p, s, r, j in rows]
    out += ["",
            "| measure | result | target | |", "| --- | ---: | ---: | --- |",
            f"| pages fetched (status) | {st['fetched']} (failed {st['failed']}) | >= {target_pages} | "
            f"{'met' if st['fetched'] >= target_pages else '**NOT met**'} |",
            f"| peak RSS (max of VmHWM and rusage) | {peak:.1f} MB | <= {target_rss} MB | "
            f"{'met' if peak <= target_rss else '**NOT met**'} |",
            f"| VmRSS at {rows[0][0]} pages -> highest later mark | {first_rss:.1f} -> {end_rss:.1f} MB | flat | "
            f"{'flat' if flat else '**GROWING**'} |",
            f"| throughput | {mem.pps:.0f} pages/s ({commits[-1]:.1f} s to the last page, {mem.secs:.1f} s in all), "
            f"{mem.cpu:.1f} CPU s (other {mem.other_cpu:.1f}){' *' if mem.disturbed else ''} | | |",
            f"| journal at the end | {mem.samples[-1][3] / 1e6:.0f} MB on disk, {st['urls']} URLs | | |", ""]
    return out


def update_benchmarks(path, section_text):
    """Replaces the section (up to the next "## "), keeping its "### Analysis" part."""
    lines = open(path).read().splitlines() if os.path.exists(path) else ["# Benchmarks", ""]
    keep, analysis, inside, in_analysis = [], [], False, False
    for line in lines:
        if line.startswith("## "):
            inside = line == SECTION
            in_analysis = False
            if inside:
                continue
        if inside:
            if line.startswith("### "):
                in_analysis = line.startswith("### Analysis")
            if in_analysis:
                analysis.append(line)
            continue
        keep.append(line)
    text = "\n".join(keep).rstrip() + "\n\n" + section_text
    if analysis:
        text = text.rstrip() + "\n\n" + "\n".join(analysis).rstrip() + "\n"
    with open(path, "w") as f:
        f.write(text)
