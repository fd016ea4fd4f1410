"""Timed runs for tools/bench-crawl: quiet-machine waits, CPU accounting, RSS sampling.

Each timed run records the client's CPU time (rusage of the reaped child), the CPU time of
the servers it talks to (from /proc/PID/stat), and that of everything else on the machine
(from /proc/stat), so a run disturbed by a build or a test suite running at the same time
shows up as such. Before each run it waits (up to `quiet_wait` s) for the machine to be
idle, and a disturbed run is run again (up to `retries` times), keeping the least
disturbed attempt: the conventions of tools/bench-fetch.
"""
import os
import signal
import subprocess
import sys
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine so far."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total


def proc_ticks(pids):
    """CPU ticks used so far by these processes and their children (one level down)."""
    seen, ticks = set(), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        for p in [pid, *kids]:
            if p in seen:
                continue
            seen.add(p)
            try:
                with open(f"/proc/{p}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                ticks += int(rest[11]) + int(rest[12])
            except (OSError, IndexError, ValueError):
                pass
    return ticks


def status_kb(pid):
    """(VmRSS, VmHWM) of a process in kB, or None once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return (rss, hwm) if rss else None


class Run:
    """What one timed run measured."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def other_frac(self):
        """Share of the machine other work took, in the window that is measured."""
        return self.w_other_cpu / max(self.w_secs * NPROC, 1e-9)


class Runner:
    def __init__(self, quiet_wait, quiet_pct, retries, disturbed_pct, server_pids):
        self.quiet_wait = quiet_wait
        self.quiet_pct = quiet_pct
        self.retries = retries
        self.disturbed_pct = disturbed_pct
        self.server_pids = server_pids

    def wait_quiet(self):
        """Waits up to quiet_wait s for the rest of the machine to be idle; returns its busy %."""
        waited = 0
        while True:
            b1, t1 = machine_ticks()
            time.sleep(2)
            b2, t2 = machine_ticks()
            busy = 100 * (b2 - b1) // max(t2 - t1, 1)
            if busy <= self.quiet_pct or waited >= self.quiet_wait:
                break
            if waited == 0:
                say(f"other processes use {busy}% of the CPU; waiting up to {self.quiet_wait}s for a quiet machine")
            waited += 2
        if busy > self.quiet_pct:
            warn(f"the machine is still {busy}% busy with other work: figures will be low and noisy")
        return busy

    def run(self, tag, argv, env, log, before=None, sample=None, limit=None, marker=None, kill_at_mark=False):
        """Runs argv (stdout discarded, stderr to `log`) until it exits, again when disturbed.

        `before()` is called before each attempt (e.g. to remove the journal). `sample(pid,
        t0)` runs in a thread while the process lives; what it returns becomes the Run's
        `samples`. `limit` (s): past it the process is sent SIGINT, and SIGKILL 30 s
        later. `marker()` makes, for each attempt, a test `mark_when()` that is checked 4
        times a second and ends the measured window when it turns true: `w_secs`, `w_cpu`,
        `w_server_cpu` and `w_other_cpu` cover the run up to then (without it, the whole
        run), and whether a run was disturbed is judged on it; with `kill_at_mark` the
        process is then killed (SIGKILL). `Run.stopped` says why it
        was stopped, if it was. Returns the least disturbed attempt's Run.
        """
        best = None
        for attempt in range(self.retries + 1):
            if before:
                before()
            run = self._once(argv, env, log, sample, limit, marker() if marker else None, kill_at_mark)
            if run.rc != 0 and not run.stopped:
                return run
            run.disturbed = run.other_frac > self.disturbed_pct / 100
            if best is None or run.other_frac < best.other_frac:
                if best is not None:
                    os.remove(best.log)
                best = run
            if not run.disturbed or attempt == self.retries:
                break
            say(f"{tag}: other processes took {run.w_other_cpu:.2f} CPU s in the {run.w_secs:.1f} s measured; running it again ({attempt + 1}/{self.retries})")
            # The best attempt's log goes aside while the next one writes `log`.
            if best.log == log:
                os.replace(log, log + ".best")
                best.log = log + ".best"
        if best.log != log:
            os.replace(best.log, log)
            best.log = log
        return best

    def _once(self, argv, env, log, sample, limit, mark_when, kill_at_mark):
        subprocess.run(["sync"], check=False)
        busy_before = self.wait_quiet()
        b1, _ = machine_ticks()
        s1 = proc_ticks(self.server_pids)
        t0 = time.time()
        with open(log, "wb") as err:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        sampler, samples = None, []
        if sample:
            sampler = threading.Thread(target=lambda: samples.extend(sample(proc.pid, t0)), daemon=True)
            sampler.start()
        # Signals only before the process is reaped (its pid cannot have been reused).
        lock, reaped, why, mark = threading.Lock(), threading.Event(), [], []

        def watch():
            while not reaped.wait(0.25):
                elapsed = time.time() - t0
                sig = None
                if mark_when and not mark and mark_when():
                    busy, _ = machine_ticks()
                    mark.append((elapsed, busy, proc_ticks(self.server_pids), proc_ticks([proc.pid])))
                    if kill_at_mark:
                        why.append("killed once done")
                        sig = signal.SIGKILL
                elif limit and elapsed >= limit + 30:
                    sig = signal.SIGKILL
                elif limit and elapsed >= limit and not why:
                    why.append("interrupted at the time limit")
                    sig = signal.SIGINT
                if sig:
                    with lock:
                        if not reaped.is_set():
                            os.kill(proc.pid, sig)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with lock:
            reaped.set()
        _, status, usage = os.wait4(proc.pid, 0)
        t1 = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.join()
        if sampler:
            sampler.join()
        b2, _ = machine_ticks()
        s2 = proc_ticks(self.server_pids)
        cpu = usage.ru_utime + usage.ru_stime
        server_cpu = (s2 - s1) / HZ
        other = max((b2 - b1) / HZ - cpu - server_cpu, 0.0)
        window = (t1 - t0, cpu, server_cpu, other)
        if mark:
            secs, bm, sm, cm = mark[0]
            w_server = (sm - s1) / HZ
            window = (secs, cm / HZ, w_server, max((bm - b1) / HZ - cm / HZ - w_server, 0.0))
        return Run(
            rc=proc.returncode,
            t0=t0,
            secs=t1 - t0,
            cpu=cpu,
            maxrss_kb=usage.ru_maxrss,
            server_cpu=server_cpu,
            other_cpu=other,
            busy_before=busy_before,
            disturbed=False,
            stopped=why[0] if why else None,
            log=log,
            samples=samples,
            w_secs=window[0],
            w_cpu=window[1],
            w_server_cpu=window[2],
            w_other_cpu=window[3],
        )


