"""Load generators of the serving rows: closed-loop throughput (wrk, or Python processes without it)
and an open-loop replay of an arrival trace (asyncio), all over keep-alive HTTP/1.1 on loopback; and the
server subprocess they load (:class:`Server`)."""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing as mp
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

__all__ = ["Server", "free_port", "closed_loop", "open_loop", "bursty_trace", "have_wrk"]

_LUA = """wrk.method = "POST"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess, ready when /v2/health/ready answers 200; stopped with SIGTERM."""

    def __init__(self, cmd: list[str], port: int, log: Path):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"server exited early: {' '.join(cmd)}; see {log}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not get ready: {' '.join(cmd)}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float,
                scratch: Path) -> dict:
    """``concurrency`` connections each sending back-to-back; returns throughput and latency percentiles."""
    if have_wrk():
        return _wrk(url, body, headers, concurrency, seconds, scratch)
    return _python_closed_loop(url, body, headers, concurrency, seconds)


def _wrk(url, body, headers, concurrency, seconds, scratch) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    bpath = scratch / "wrk-body.bin"
    bpath.write_bytes(body)
    lua = scratch / "wrk-post.lua"
    hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    lua.write_text(_LUA.format(body=bpath, headers=hdrs))
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"concurrency": concurrency, "rps": r["requests"] / (r["duration_us"] / 1e6),
            "p50_ms": r["p50_us"] / 1e3, "p90_ms": r["p90_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
            "requests": r["requests"], "errors": r["socket_errors"] + r["status_errors"], "client": "wrk"}


def _client_proc(host, port, path, body, headers, seconds, q):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    lat, errors, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        r.read()
        lat.append(time.perf_counter() - t)
        errors += r.status != 200
    q.put((lat, errors))


def _python_closed_loop(url, body, headers, concurrency, seconds) -> dict:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    q = mp.get_context("fork").Queue()
    procs = [mp.get_context("fork").Process(target=_client_proc, args=(u.hostname, u.port, u.path, body, headers,
                                                                      seconds, q)) for _ in range(concurrency)]
    for p in procs:
        p.start()
    lat, errors = [], 0
    for _ in procs:
        a, e = q.get()
        lat += a
        errors += e
    for p in procs:
        p.join()
    ms = np.asarray(lat) * 1e3
    return {"concurrency": concurrency, "rps": len(lat) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "requests": len(lat), "errors": errors, "client": "python-processes"}


def bursty_trace(calm_rps: float, burst_rps: float, calm_s: float, burst_s: float, cycles: int,
                 seed: int = 0) -> np.ndarray:
    """Arrival times (s): Poisson arrivals alternating calm and burst phases (open loop)."""
    rng = np.random.default_rng(seed)
    times, t0 = [], 0.0
    for _ in range(cycles):
        for rate, dur in ((calm_rps, calm_s), (burst_rps, burst_s)):
            t = t0 + rng.exponential(1 / rate)
            while t < t0 + dur:
                times.append(t)
                t += rng.exponential(1 / rate)
            t0 += dur
    return np.asarray(times)


async def _replay(host, port, path, body, headers, arrivals):
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    idle: list = []
    results = [None] * len(arrivals)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(k, at):
        await asyncio.sleep(max(start + at - loop.time(), 0))
        t_sched = start + at
        try:
            reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
            writer.write(head + body)
            status_line = await reader.readline()
            if not status_line:  # the server closed this idle keep-alive connection: reconnect once
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(head + body)
                status_line = await reader.readline()
            hdrs = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                key, _, val = line.decode("latin-1").partition(":")
                hdrs[key.strip().lower()] = val.strip()
            payload = await reader.readexactly(int(hdrs["content-length"]))
            done = loop.time()
            idle.append((reader, writer))
            status = int(status_line.split()[1])
            hl = hdrs.get("inference-header-content-length")
            variant = json.loads(payload[:int(hl)] if hl else payload).get("parameters", {}).get("variant") \
                if status == 200 else None
            results[k] = (done - t_sched, status, variant)
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, IndexError) as e:
            results[k] = (loop.time() - t_sched, 0, repr(e))

    await asyncio.gather(*(one(k, at) for k, at in enumerate(arrivals)))
    for _, w in idle:
        w.close()
    return results


def open_loop(url: str, body: bytes, headers: dict[str, str], arrivals: np.ndarray) -> list[tuple]:
    """Send one request at each arrival time regardless of replies; ``[(latency_s, status, variant)]``
    with latency measured from the scheduled arrival (so client-side queueing counts against it)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(_replay(u.hostname, u.port, u.path, body, headers, arrivals))
