"""Load on `medkiosk serve` over loopback: N clients x M classify requests, latency, errors, memory.

Starts the real service (``python -m edge serve``, TLS, the shipped bundles, ONNX Runtime on the
CPU) in its own process with a rate limit high enough not to interfere, pairs one device per
client, and has each client send real X-rays (from ../shared/data) over its own HTTPS connection.
The service's RSS is sampled from /proc every 0.5 s: flat memory means no growth between the point
where a tenth of the requests are done (buffers and arenas warmed up) and the end.
With ``--kiosk-frames`` the real kiosk (``medkiosk run``, headless) also runs over a video of real
X-rays, alone and then beside the saturated service: the service must not starve the screen. The
service can be limited as its systemd unit would limit it (``benchmarks.cpu_limit``): ``--serve-nice``
(Nice=), ``--serve-sched-idle`` (CPUSchedulingPolicy=idle), ``--serve-cpu-quota`` (CPUQuota=, a cgroup
with a CFS bandwidth limit; root and a writable cgroup cpu controller).
Writes benchmarks/results/serve-load[-nice N][-idle][-quota P].json and regenerates docs/benchmarks.md.

    python benchmarks/serve_load.py --clients 8 --requests 200 --kiosk-frames 300 --serve-nice 10 \
        --serve-cpu-quota 50
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

from benchmarks import common  # noqa: E402
from benchmarks.cpu_limit import CpuQuota, preexec_for  # noqa: E402

NAME = "serve-load"
BUSY_RUNS = 5  # kiosk runs beside the load, at most
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "chest-pediatric", "train")
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


def _start(config, log_path, preexec=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--config", config, "--port", "0"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   preexec_fn=preexec)
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


def kiosk_fps(video, frames, preexec=None):
    """Frames per second of the real kiosk (`medkiosk run`, headless, chest module) over ``video``.

    Timed between its first and last result line, so model loading is not counted.
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "edge", "run", "--models", os.path.join(ROOT, "models", "chest"),
               "--source", "file://" + video, "--output", "null://", "--max-frames", str(frames),
               "--size", "800x480", "--backend", "onnxruntime"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                               universal_newlines=True, preexec_fn=preexec)
    stamps = [time.perf_counter() for line in process.stdout if line.startswith("[")]
    process.wait()
    if len(stamps) < 2:
        raise SystemExit("serve_load: the kiosk printed no results (exit {})".format(process.returncode))
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _median(values):
    return round(common.percentile(sorted(values), 50), 2) if values else None


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run(clients, requests, module, http_threads, cpu_threads, kiosk_frames=0, serve_nice=0, sched_idle=False,
        cpu_quota=None, cpu_weight=None):
    """The load run; the service limited by ``serve_nice``, ``sched_idle``, ``cpu_quota`` (percent of
    one core) and ``cpu_weight`` (systemd's CPUWeight=, 100 = the default every other unit has)."""
    quota = CpuQuota(cpu_quota, weight=cpu_weight) if cpu_quota or cpu_weight else None
    if quota is None:
        return _run(clients, requests, module, http_threads, cpu_threads, kiosk_frames,
                    preexec_for(serve_nice, sched_idle), None)
    # Under systemd each unit is a cgroup of its own: the kiosk too (CPUWeight 100, the default), apart
    # from the service and from this load generator (whose clients stand in for other machines).
    kiosk_group = CpuQuota(weight=100, name="medkiosk-bench-kiosk-{}".format(os.getpid()))
    with quota, kiosk_group:
        result = _run(clients, requests, module, http_threads, cpu_threads, kiosk_frames,
                      preexec_for(serve_nice, sched_idle, quota), quota, kiosk_group.preexec)
    result["kiosk_cgroup"], result["service_cgroup"] = kiosk_group.setting(), quota.setting()
    return result


def _run(clients, requests, module, http_threads, cpu_threads, kiosk_frames, preexec, quota,
         kiosk_preexec=None):
    images = []
    for label in ("PNEUMONIA", "NORMAL"):
        for name in sorted(os.listdir(os.path.join(DATA, label)))[:20]:
            with open(os.path.join(DATA, label, name), "rb") as handle:
                images.append(handle.read())
    folder = tempfile.mkdtemp(prefix="serve-load-")
    config = _config(folder, http_threads, cpu_threads)
    process, port = _start(config, os.path.join(folder, "serve.log"), preexec)
    throttled = None
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
        fps = {"idle": [], "busy": [], "busy_with_requests_running": True}
        if kiosk_frames:
            video = _make_video(folder, kiosk_frames)
            fps["idle"].append(kiosk_fps(video, kiosk_frames, kiosk_preexec))
        before = quota.stats() if quota is not None else None
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        if kiosk_frames:
            time.sleep(5.0)  # the load is on before the kiosk starts
            # As many kiosk runs as the load lasts (at least one): a shared machine drifts, medians hold.
            while len(fps["busy"]) < BUSY_RUNS and (not fps["busy"] or any(t.is_alive() for t in threads)):
                fps["busy"].append(kiosk_fps(video, kiosk_frames, kiosk_preexec))
                fps["busy_with_requests_running"] &= any(thread.is_alive() for thread in threads)
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        if quota is not None:
            after = quota.stats()
            throttled = {key: after[key] - before.get(key, 0) for key in after}
        done.set()
        sampler.join()
        if kiosk_frames:  # alone again, the service idle: before and after frame the load
            fps["idle"].append(kiosk_fps(video, kiosk_frames, kiosk_preexec))
    finally:
        stop_hung = _stop(process)
    total = clients * requests
    warm = [mb for count, mb in rss if count >= total // 10] or [rss[-1][1]]
    return {
        "clients": clients, "requests_per_client": requests, "module": module, "http_threads": http_threads,
        "cpu_threads": cpu_threads, "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(str(e) for e in errors)), "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(_percentile(latencies, 0.50), 1), "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "rss_idle_mb": round(rss[0][1], 1),
        "rss_after_first_tenth_mb": round(warm[0], 1),
        "rss_end_mb": round(warm[-1], 1),
        "rss_peak_mb": round(max(mb for _count, mb in rss), 1),
        "kiosk_frames": kiosk_frames,
        "kiosk_fps_idle": _median(fps["idle"]), "kiosk_fps_busy": _median(fps["busy"]),
        "kiosk_fps_idle_runs": [round(v, 2) for v in fps["idle"]],
        "kiosk_fps_busy_runs": [round(v, 2) for v in fps["busy"]],
        "kiosk_measured_while_busy": fps["busy_with_requests_running"] if kiosk_frames else None,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "cgroup_cpu_stat_during_load": throttled,
        "service_stop_hung": stop_hung,
    }


def _stop(process, timeout_s=30):
    """SIGTERM the service, as systemd stops it; True if it had not exited after ``timeout_s`` (then it is
    killed, as systemd's TimeoutStopSec= would, and the run still reports its numbers)."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True


def limits_label(result):
    """The service's limits as the systemd unit would spell them ("none" when it ran like the kiosk)."""
    limits = result.get("limits") or {}
    parts = []
    if limits.get("nice"):
        parts.append("Nice={}".format(limits["nice"]))
    if limits.get("sched_idle"):
        parts.append("CPUSchedulingPolicy=idle")
    if limits.get("cpu_weight"):
        parts.append("CPUWeight={}".format(limits["cpu_weight"]))
    if limits.get("cpu_quota_percent"):
        parts.append("CPUQuota={:g}%".format(limits["cpu_quota_percent"]))
    return " + ".join(parts) or "none (same priority as the kiosk)"


def render_markdown(result):
    """The section of docs/benchmarks.md for one load run."""
    env = result["environment"]
    lines = ["## {}".format(result["title"]), ""]
    lines.append("Measured {} on {} ({} CPUs; load average {} at the start), Python {}; `medkiosk serve` "
                 "over loopback HTTPS, {} clients x {} `{}` classify requests of real X-rays, {} HTTP "
                 "threads, {} CPU inference thread(s); the kiosk (`medkiosk run`, headless, {} frames of "
                 "real X-rays) alone, then beside the saturated service.".format(
                     env["date"], env.get("cpu") or env["machine"], env["cpu_count"], env["load_average"],
                     env["python"], result["clients"], result["requests_per_client"], result["module"],
                     result["http_threads"], result["cpu_threads"], result.get("kiosk_frames")))
    lines += ["", "Command: `{}`".format(result["command"]), ""]
    idle, busy = result.get("kiosk_fps_idle"), result.get("kiosk_fps_busy")
    kept = None if not idle or busy is None else busy / idle
    rows = [
        ("service limits (as in its systemd unit)", limits_label(result)),
        ("requests, errors", "{} requests, {} errors".format(result["requests"], result["errors"])),
        ("latency p50 / p99 / max (ms)",
         "{} / {} / {}".format(result["p50_ms"], result["p99_ms"], result["max_ms"])),
        ("service throughput", "{} requests/s".format(result["throughput_rps"])),
        ("service RSS idle; after 10% of requests -> end (peak), MB", "{}; {} -> {} ({})".format(
            result["rss_idle_mb"], result["rss_after_first_tenth_mb"], result["rss_end_mb"],
            result["rss_peak_mb"])),
        ("kiosk frames/s alone (median of before and after the load) -> beside the load (median)",
         "{} -> {} (runs: alone {}; beside {})".format(
             common.fmt(idle, 1), common.fmt(busy, 1),
             ", ".join(str(v) for v in result.get("kiosk_fps_idle_runs", [])),
             ", ".join(str(v) for v in result.get("kiosk_fps_busy_runs", [])))),
        ("kiosk frame rate kept under the load",
         "**{}**".format("n/a" if kept is None else "{:.0%}".format(kept))),
    ]
    if result.get("service_cgroup"):
        rows.append(("scheduling", "service and kiosk each in a cgroup of its own (cgroup v{}), as systemd "
                     "runs units".format(result["service_cgroup"]["cgroup_version"])))
    elif (result.get("limits") or {}).get("cpu_quota_percent"):  # runs before the kiosk had a cgroup
        rows.append(("scheduling",
                     "service in a cgroup of its own; the kiosk in the load generator's session"))
    else:
        rows.append(("scheduling", "service and kiosk children of one session (sched_autogroup: one group)"))
    if result.get("service_stop_hung"):
        rows.append(("service stop", "**hung**: still running 30 s after SIGTERM, killed"))
    stat = result.get("cgroup_cpu_stat_during_load")
    if stat and stat.get("nr_periods"):
        rows.append(("cgroup throttling during the load (cpu.stat)", "{} of {} periods throttled".format(
            stat.get("nr_throttled", "n/a"), stat.get("nr_periods", "n/a"))))
    return "\n".join(lines + common.table(("measure", "value"), rows) + [""]) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/serve_load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--module", default="pediatric-pneumonia")
    parser.add_argument("--http-threads", type=int, default=4)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--kiosk-frames", type=int, default=0,
                        help="also run the kiosk over a video of this many frames, alone and under the load")
    parser.add_argument("--serve-nice", type=int, default=0,
                        help="run the service this much nicer than the kiosk (the systemd unit: Nice=10)")
    parser.add_argument("--serve-sched-idle", action="store_true",
                        help="run the service under SCHED_IDLE (systemd: CPUSchedulingPolicy=idle)")
    parser.add_argument("--serve-cpu-quota", type=float, default=None, metavar="PERCENT",
                        help="cap the service at PERCENT%% of one core in a cgroup (systemd: CPUQuota=)")
    parser.add_argument("--serve-cpu-weight", type=int, default=None, metavar="WEIGHT",
                        help="the service's cgroup CPU weight (systemd: CPUWeight=; others have 100)")
    common.add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = common.environment()
    result = run(args.clients, args.requests, args.module, args.http_threads, args.cpu_threads,
                 args.kiosk_frames, args.serve_nice, args.serve_sched_idle, args.serve_cpu_quota,
                 args.serve_cpu_weight)
    result.update({"environment": env, "command": common.command_line("serve_load", argv),
                   "limits": {"nice": args.serve_nice, "sched_idle": args.serve_sched_idle,
                              "cpu_quota_percent": args.serve_cpu_quota,
                              "cpu_weight": args.serve_cpu_weight}})
    result["title"] = "LAN service under load, the kiosk beside it - service limits: {}".format(
        limits_label(result))
    tag = [""]
    if args.serve_nice:
        tag.append("nice{}".format(args.serve_nice))
    if args.serve_sched_idle:
        tag.append("idle")
    if args.serve_cpu_weight:
        tag.append("weight{}".format(args.serve_cpu_weight))
    if args.serve_cpu_quota:
        tag.append("quota{:g}".format(args.serve_cpu_quota))
    if not args.out_json:
        args.out_json = os.path.join(common.RESULTS_DIR, NAME + "-".join(tag) + ".json")
    common.finish(result, args, NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
