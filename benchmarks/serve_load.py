"""Load on `medkiosk serve` over loopback: N clients x M classify requests, latency, errors, memory.

Starts the real service (``python -m edge serve``, TLS, the shipped bundles, ONNX Runtime on the
CPU) in its own process with a rate limit high enough not to interfere, pairs one device per
client, and has each client send real X-rays (from ../shared/data) over its own HTTPS connection.
The service's RSS is sampled from /proc every 0.5 s: flat memory means no growth between the point
where a tenth of the requests are done (buffers and arenas warmed up) and the end.
Writes benchmarks/results/serve-load.json and prints a Markdown summary for docs/serve.md.

    python benchmarks/serve_load.py --clients 8 --requests 200
"""

import argparse
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "chest-pediatric", "train")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "serve-load.json")
READY = re.compile(r"on https://127\.0\.0\.1:(\d+)/")


def _config(folder, http_threads, cpu_threads):
    path = os.path.join(folder, "medkiosk.conf")
    with open(path, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = chest, pediatric-pneumonia\nstate_dir = {}\n"
                     "min_free_mb = 1\n\n[serve]\nenabled = yes\nbind = 127.0.0.1\nrate_per_minute = 100000\n"
                     "tls_dir = {}\nhttp_threads = {}\ncpu_threads = {}\n".format(
                         os.path.join(ROOT, "models"), os.path.join(folder, "state"),
                         os.path.join(folder, "state", "serve", "tls"), http_threads, cpu_threads))
    return path


def _start(config, log_path, nice=0):
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--config", config, "--port", "0"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   preexec_fn=(lambda: os.nice(nice)) if nice else None)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with open(log_path) as handle:
            match = READY.search(handle.read())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit("serve_load: the service did not start; see " + log_path)


def _rss_mb(pid):
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _multipart(module, data):
    boundary = uuid.uuid4().hex
    body = ("--{0}\r\nContent-Disposition: form-data; name=\"module\"\r\n\r\n{1}\r\n--{0}\r\n"
            "Content-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").format(boundary, module).encode() + data
    body += "\r\n--{}--\r\n".format(boundary).encode()
    return body, "multipart/form-data; boundary=" + boundary


def _pair(port, context, config):
    from edge.config import load_config
    from edge.serve.auth import DeviceStore
    from edge.serve.settings import ServeSettings

    settings = ServeSettings(load_config(config))
    code, _expires = DeviceStore(settings.state_dir, settings.pair_seconds).new_code()
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
    connection.request("POST", "/api/v1/pair", json.dumps({"code": code, "device": "load"}),
                       {"Content-Type": "application/json"})
    token = json.loads(connection.getresponse().read().decode())["token"]
    connection.close()
    return token


def _client(port, context, token, images, count, module, latencies, errors):
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
    for index in range(count):
        body, kind = _multipart(module, images[index % len(images)])
        start = time.perf_counter()
        try:
            connection.request("POST", "/api/v1/classify", body, {"Authorization": "Bearer " + token,
                                                                   "Content-Type": kind})
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            connection.close()
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
        latencies.append((time.perf_counter() - start) * 1000.0)
        if status != 200:
            errors.append(status)
    connection.close()


def _make_video(folder, frames):
    """A 640x480 video of real X-rays (4 frames each) for the kiosk to show beside the load."""
    import cv2

    names = sorted(os.listdir(os.path.join(DATA, "NORMAL")))[:max(1, frames // 4 + 1)]
    path = os.path.join(folder, "xrays.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for index in range(frames):
        image = cv2.imread(os.path.join(DATA, "NORMAL", names[index // 4]))
        writer.write(cv2.resize(image, (640, 480)))
    writer.release()
    return path


def kiosk_fps(video, frames):
    """Frames per second of the real kiosk (`medkiosk run`, headless, chest module) over ``video``.

    Timed between its first and last result line, so model loading is not counted.
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "edge", "run", "--models", os.path.join(ROOT, "models", "chest"),
               "--source", "file://" + video, "--output", "null://", "--max-frames", str(frames),
               "--size", "800x480", "--backend", "onnxruntime"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                               universal_newlines=True)
    stamps = [time.perf_counter() for line in process.stdout if line.startswith("[")]
    process.wait()
    if len(stamps) < 2:
        raise SystemExit("serve_load: the kiosk printed no results (exit {})".format(process.returncode))
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run(clients, requests, module, http_threads, cpu_threads, kiosk_frames=0, serve_nice=0):
    images = []
    for label in ("PNEUMONIA", "NORMAL"):
        for name in sorted(os.listdir(os.path.join(DATA, label)))[:20]:
            with open(os.path.join(DATA, label, name), "rb") as handle:
                images.append(handle.read())
    folder = tempfile.mkdtemp(prefix="serve-load-")
    config = _config(folder, http_threads, cpu_threads)
    process, port = _start(config, os.path.join(folder, "serve.log"), serve_nice)
    try:
        context = ssl.create_default_context(cafile=os.path.join(folder, "state", "serve", "tls", "cert.pem"))
        tokens = [_pair(port, context, config) for _ in range(clients)]
        rss, latencies, errors, done = [], [], [], threading.Event()

        def sample():
            while not done.is_set():
                rss.append((len(latencies), _rss_mb(process.pid)))
                done.wait(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=_client, args=(port, context, token, images, requests, module,
                                                          latencies, errors)) for token in tokens]
        fps = {}
        if kiosk_frames:
            video = _make_video(folder, kiosk_frames)
            fps["idle"] = kiosk_fps(video, kiosk_frames)
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        if kiosk_frames:
            time.sleep(5.0)  # the load is on before the kiosk starts
            fps["busy"] = kiosk_fps(video, kiosk_frames)
            fps["busy_with_requests_running"] = any(thread.is_alive() for thread in threads)
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    finally:
        process.terminate()
        process.wait(timeout=30)
    total = clients * requests
    warm = [mb for count, mb in rss if count >= total // 10] or [rss[-1][1]]
    return {
        "clients": clients, "requests_per_client": requests, "module": module, "http_threads": http_threads,
        "cpu_threads": cpu_threads, "serve_nice": serve_nice, "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(str(e) for e in errors)), "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(_percentile(latencies, 0.50), 1), "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "rss_idle_mb": round(rss[0][1], 1),
        "rss_after_first_tenth_mb": round(warm[0], 1),
        "rss_end_mb": round(warm[-1], 1),
        "rss_peak_mb": round(max(mb for _count, mb in rss), 1),
        "kiosk_fps_idle": round(fps["idle"], 2) if fps else None,
        "kiosk_fps_busy": round(fps["busy"], 2) if fps else None,
        "kiosk_measured_while_busy": fps.get("busy_with_requests_running"), "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--module", default="pediatric-pneumonia")
    parser.add_argument("--http-threads", type=int, default=4)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--kiosk-frames", type=int, default=0,
                        help="also run the kiosk over a video of this many frames, alone and under the load")
    parser.add_argument("--serve-nice", type=int, default=0,
                        help="run the service this much nicer than the kiosk (the systemd unit: Nice=10)")
    args = parser.parse_args(argv)
    result = run(args.clients, args.requests, args.module, args.http_threads, args.cpu_threads,
                 args.kiosk_frames, args.serve_nice)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    path = RESULTS
    if args.serve_nice:
        path = RESULTS.replace(".json", "-nice{}.json".format(args.serve_nice))
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    print("| clients x requests | errors | p50 | p99 | max | throughput "
          "| RSS idle; after 10% of requests -> end (peak) |")
    print("|---|---|---|---|---|---|---|")
    print("| {clients} x {requests_per_client} | {errors} of {requests} | {p50_ms} ms | {p99_ms} ms "
          "| {max_ms} ms | {throughput_rps} req/s "
          "| {rss_idle_mb}; {rss_after_first_tenth_mb} -> {rss_end_mb} MB ({rss_peak_mb}) |".format(**result))
    if args.kiosk_frames:
        print("kiosk beside it: {kiosk_fps_idle} fps alone, {kiosk_fps_busy} fps under the load (measured "
              "while busy: {kiosk_measured_while_busy})".format(**result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
