"""Memory: peak resident memory (RSS) of the kiosk loop and of ``medkiosk classify``, per backend.

Each case runs as its own process (``python -m edge ...``, the code the ``medkiosk`` command runs) and
its peak RSS is read from the kernel when it exits (``os.wait4`` -> ``ru_maxrss``, the same figure
as /proc/PID/status VmHWM), so nothing is sampled and nothing is missed. A ``python + numpy + OpenCV
+ runtime`` import-only process is measured too, to show how much is the libraries' floor and how
much the model. On a Jetson the CPU and GPU share the 4 GB, and CUDA's own mappings count in RSS.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NAME = "memory"
GOAL_MB = 500.0
GOAL_BACKEND = "onnxruntime"
DEFAULT_BUNDLE = os.path.join(common.ROOT, "models", "chest")
BASELINE_IMPORTS = {
    "onnxruntime": "import numpy, cv2, onnxruntime",
    "tensorrt": "import numpy, cv2, tensorrt, pycuda.driver",
}


# Linux starts a forked child's high-water RSS at the parent's current RSS and keeps it across
# exec, so a child forked from this (large) process would report at least this process's RSS. A
# small launcher (``python -S``, ~10 MB) forks the measured command instead and reports the
# child's ru_maxrss, and its own RSS at the fork: the floor below which nothing can be measured.
LAUNCHER = """
import json, os, sys
own = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmRSS:"):
            own = int(line.split()[1])
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
with open(sys.argv[1], "w") as handle:
    json.dump({"returncode": code, "maxrss_kb": usage.ru_maxrss, "launcher_kb": own}, handle)
sys.exit(0)
"""


def run_measured(argv, env=None, timeout_s=600.0):
    """Run ``argv``; return {returncode, peak_rss_mb, wall_s, stderr_tail} from the kernel's rusage."""
    import json

    start = time.perf_counter()
    descriptor, report = tempfile.mkstemp(suffix=".json")
    os.close(descriptor)
    try:
        with tempfile.TemporaryFile() as err, open(os.devnull, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-S", "-c", LAUNCHER, report] + list(argv),
                stdout=out,
                stderr=err,
                env=env,
                cwd=common.ROOT,
            )
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace")
        with open(report) as handle:
            text = handle.read()
        measured = json.loads(text) if text else {"returncode": -1, "maxrss_kb": 0, "launcher_kb": 0}
    finally:
        os.remove(report)
    # Linux reports ru_maxrss in KiB.
    return {
        "returncode": measured["returncode"],
        "peak_rss_mb": measured["maxrss_kb"] / 1024.0,
        "floor_mb": measured["launcher_kb"] / 1024.0,
        "wall_s": time.perf_counter() - start,
        "stderr_tail": tail.strip().splitlines()[-5:],
    }


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = common.ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def available_backends(bundle_path, precision_of=lambda name: "fp32"):
    """{backend name: None if usable here (at its precision, with its engine built) else the reason}."""
    from edge.backends import BACKENDS
    from edge.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    found = {}
    for name in sorted(BACKENDS):
        try:
            found[name] = BACKENDS[name].check(bundle, precision=precision_of(name))
        except Exception as exc:  # a broken install raising on import is "not available", with its reason
            found[name] = "{}: {}".format(type(exc).__name__, exc)
    return found


def kiosk_argv(bundle, backend, precision, video, frames):
    """The headless kiosk loop on a video for ``frames`` frames."""
    return [sys.executable, "-m", "edge", "run"] + common.headless_run_args(
        bundle, video, frames, backend, precision
    )


def classify_argv(bundle, backend, precision, images):
    return [
        sys.executable,
        "-m",
        "edge",
        "classify",
        "--bundle",
        bundle,
        "--backend",
        backend,
        "--precision",
        precision,
    ] + list(images)


def make_inputs(workdir, frames, count, bundle_path):
    """A 640x480 video (of the bundle's golden images) and a few 640x480 stills taken from it."""
    import cv2

    from edge.bundle import load_bundle

    video, _description = common.make_video(
        os.path.join(workdir, "frames.avi"), frames, load_bundle(bundle_path)
    )
    capture = cv2.VideoCapture(video)
    images = []
    try:
        for index in range(count):
            ok, frame = capture.read()
            if not ok:
                break
            path = os.path.join(workdir, "still{}.png".format(index))
            cv2.imwrite(path, frame)
            images.append(path)
    finally:
        capture.release()
    return video, images


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/memory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help="model bundle (default: %(default)s)")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated backends to measure (default: every backend usable here)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="precision for every backend (default: fp32 for onnxruntime, fp16 for tensorrt)",
    )
    parser.add_argument("--frames", type=int, default=300, help="kiosk frames (default: %(default)s)")
    parser.add_argument("--images", type=int, default=8, help="images for classify (default: %(default)s)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each case; the largest peak is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per process (default: %(default)s)"
    )
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.frames = min(args.frames, 20)
        args.images = min(args.images, 2)
        args.repeats = 1
    return args


def precision_for(args, backend):
    return args.precision or ("fp16" if backend == "tensorrt" else "fp32")


def measure(args, workdir, log=print):
    env = child_env()
    status = available_backends(args.bundle, lambda name: precision_for(args, name))
    wanted = (
        [b.strip() for b in args.backends.split(",")]
        if args.backends
        else [b for b, r in status.items() if r is None]
    )
    video, images = make_inputs(workdir, args.frames, args.images, args.bundle)
    rows = []
    skipped = {b: r for b, r in status.items() if r is not None and b not in wanted}
    for backend in wanted:
        if status.get(backend) is not None:
            skipped[backend] = status.get(backend, "unknown backend")
            continue
        precision = precision_for(args, backend)
        cases = [
            (
                "python + libraries (import only)",
                [sys.executable, "-c", BASELINE_IMPORTS.get(backend, "import numpy")],
            ),
            (
                "medkiosk classify ({} images)".format(len(images)),
                classify_argv(args.bundle, backend, precision, images),
            ),
            (
                "kiosk loop ({} frames, null:// output)".format(args.frames),
                kiosk_argv(args.bundle, backend, precision, video, args.frames),
            ),
        ]
        for label, argv in cases:
            runs = []
            for _ in range(args.repeats):
                log("{}: {}".format(backend, " ".join(argv[1:])))
                runs.append(run_measured(argv, env=env, timeout_s=args.timeout))
            failed = [r for r in runs if r["returncode"] != 0]
            peaks = [r["peak_rss_mb"] for r in runs]
            rows.append(
                {
                    "backend": backend,
                    "precision": precision,
                    "case": label,
                    "command": " ".join(["python"] + argv[1:])
                    .replace(common.ROOT + os.sep, "")
                    .replace(workdir, "TMP"),
                    "peak_rss_mb": max(peaks),
                    "peak_rss_mb_runs": peaks,
                    "measurement_floor_mb": max(r["floor_mb"] for r in runs),
                    "wall_s": [r["wall_s"] for r in runs],
                    "failures": len(failed),
                    "error": failed[0]["stderr_tail"] if failed else None,
                }
            )
    return rows, skipped


def goal_checks(rows):
    checks = []
    for row in rows:
        if row["backend"] == GOAL_BACKEND and not row["case"].startswith("python"):
            checks.append(
                {
                    "case": row["case"],
                    "peak_rss_mb": row["peak_rss_mb"],
                    "ok": row["failures"] == 0 and row["peak_rss_mb"] < GOAL_MB,
                }
            )
    return checks


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = common.environment()
    workdir = tempfile.mkdtemp(prefix="medkiosk-bench-memory-")
    try:
        rows, skipped = measure(args, workdir)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    from edge.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    backends = sorted({row["backend"] for row in rows})
    result = {
        "title": "Memory (peak RSS), {}".format(bundle.bundle_id),
        "command": common.command_line(NAME, argv),
        "environment": env,
        "backend": "+".join(backends) or "none",
        "precision": args.precision or "default",
        "bundle": common.display_path(args.bundle),
        "model": {
            "arch": bundle.description.arch,
            "input": bundle.description.input.to_dict(),
            "onnx_mb": os.path.getsize(bundle.model_path) / 1e6,
        },
        "frames": args.frames,
        "images": args.images,
        "repeats": args.repeats,
        "quick": args.quick,
        "rows": rows,
        "skipped_backends": skipped,
        "goals": goal_checks(rows),
    }
    common.finish(result, args, NAME, tag=bundle.module_id)
    failures = sum(row["failures"] for row in rows)
    if failures:
        print(
            "benchmarks/memory.py: {} measured process(es) failed; see the table".format(failures),
            file=sys.stderr,
        )
        return 1
    return 0


def render_markdown(result):
    env = result["environment"]
    lines = ["## {}".format(result["title"]), ""]
    lines.append(
        "Measured {} on {} ({} CPUs; load average {}), Python {}; bundle `{}` ({}, {}x{} {}, ONNX "
        "{:.1f} MB); largest peak of {} run(s) per case{}.".format(
            env["date"],
            env.get("jetson") or env.get("cpu") or env["machine"],
            env["cpu_count"],
            env["load_average"],
            env["python"],
            result["bundle"],
            result["model"]["arch"],
            result["model"]["input"]["height"],
            result["model"]["input"]["width"],
            result["model"]["input"]["colour"],
            result["model"]["onnx_mb"],
            result["repeats"],
            " (**--quick: not a measurement**)" if result.get("quick") else "",
        )
    )
    lines.append("")
    lines.append("Command: `{}`".format(result["command"]))
    lines.append("")
    rows = []
    for row in result["rows"]:
        status = (
            "ok"
            if not row["failures"]
            else "FAILED ({}): {}".format(row["failures"], " / ".join(row["error"] or [])[:200])
        )
        rows.append((row["backend"], row["precision"], row["case"], "{:.0f}".format(row["peak_rss_mb"]),
                     ", ".join("{:.0f}".format(v) for v in row["peak_rss_mb_runs"]), status))
    lines += common.table(("backend", "precision", "process", "peak RSS (MB)", "runs (MB)", "status"), rows)
    lines.append("")
    for backend, reason in sorted(result.get("skipped_backends", {}).items()):
        lines.append("- {} not measured: {}".format(backend, reason))
    if result.get("skipped_backends"):
        lines.append("")
    goals = result.get("goals") or []
    if goals:
        lines.append("Goal: < {:.0f} MB peak RSS on ONNX Runtime CPU.".format(GOAL_MB))
        lines.append("")
        for check in goals:
            lines.append(
                "- {}: {:.0f} MB -> {}".format(
                    check["case"], check["peak_rss_mb"], "met" if check["ok"] else "MISSED"
                )
            )
        lines.append("")
    lines.append("Commands run (repository root on PYTHONPATH):")
    lines.append("")
    for row in result["rows"]:
        lines.append("- `{}`".format(row["command"]))
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
