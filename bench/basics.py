#!/usr/bin/env python3
"""Start-up time to ready, idle RSS, and RSS while streaming a large file (miss, then hit).

Usage: bench/basics.py [--size-mib N] [--wharf PATH]
Everything runs on loopback: a static upstream (python's http.server) serving a one-file Simple index, and
the wharf binary (release build by default). Prints a small table and writes bench/results/basics.json.
"""
import argparse, hashlib, http.client, json, os, pathlib, shutil, socket, subprocess, sys, tempfile, threading, time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_ready(port, timeout=20.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz"); r = c.getresponse(); r.read()
            if r.status == 200:
                return time.perf_counter()
        except OSError:
            time.sleep(0.0005)
    raise SystemExit("wharf did not become ready")


def download(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", path); r = c.getresponse()
    h = hashlib.sha256(); n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        h.update(chunk); n += len(chunk)
    return r.status, n, h.hexdigest()


def sample_peak(pid, stop, out):
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kib(pid)); time.sleep(0.05)
    out.append(peak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--wharf", default=str(ROOT / "target/release/wharf"))
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    try:
        name = "big-1.0-py3-none-any.whl"
        (work / "up/files").mkdir(parents=True); (work / "up/simple/big").mkdir(parents=True)
        h = hashlib.sha256()
        with open(work / "up/files" / name, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(args.size_mib):
                b = block[i % 7:] + block[:i % 7]
                f.write(b); h.update(b)
        digest = h.hexdigest()
        (work / "up/simple/big/index.html").write_text(
            f'<a href="../../files/{name}#sha256={digest}">{name}</a>\n')
        up_port, port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, "-m", "http.server", str(up_port), "--bind", "127.0.0.1",
                                     "--directory", str(work / "up")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        t0 = time.perf_counter()
        wharf = subprocess.Popen([args.wharf, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
                                  "--repo", f"pypi=pypi+http://127.0.0.1:{up_port}/simple/"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = wait_ready(port) - t0
        time.sleep(1.0)
        idle = rss_kib(wharf.pid)
        results = {"start_to_ready_ms": round(ready * 1000, 1), "idle_rss_mib": round(idle / 1024, 1)}
        for phase in ("miss", "hit"):
            stop, peak = threading.Event(), []
            t = threading.Thread(target=sample_peak, args=(wharf.pid, stop, peak)); t.start()
            started = time.perf_counter()
            status, n, got = download(port, f"/pypi/files/big/{name}")
            secs = time.perf_counter() - started
            stop.set(); t.join()
            assert status == 200 and n == args.size_mib << 20 and got == digest, (status, n)
            results[f"{phase}_peak_rss_mib"] = round(peak[0] / 1024, 1)
            results[f"{phase}_mib_per_s"] = round(n / secs / (1 << 20), 1)
        wharf.terminate(); wharf.wait(); upstream.terminate(); upstream.wait()
        results["file_mib"] = args.size_mib
        out = ROOT / "bench/results"; out.mkdir(exist_ok=True)
        (out / "basics.json").write_text(json.dumps(results, indent=2) + "\n")
        for k, v in results.items():
            print(f"{k:24} {v}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
