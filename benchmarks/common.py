"""Shared helpers: timing statistics, the machine record, JSON results and the docs file.

Every script writes one JSON result into a results folder; ``docs/benchmarks.md`` is then
regenerated from all the JSON files in that folder (``benchmarks.report``), so a script only ever
replaces its own section.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.errors import MedkioskError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
DOC_PATH = os.path.join(ROOT, "docs", "benchmarks.md")
SCHEMA = "medkiosk-benchmark/1"


def ensure_importable():
    """Put the repository root on sys.path when a script runs as ``python benchmarks/x.py``."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


def percentile(sorted_values, q):
    """Linear-interpolated percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        raise ValueError("no samples")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low))


def summarize(seconds):
    """Median and spread (milliseconds) of a list of durations in seconds."""
    values = sorted(float(s) * 1000.0 for s in seconds)
    if not values:
        return {"n": 0}
    p25, p75 = percentile(values, 25), percentile(values, 75)
    return {
        "n": len(values),
        "median_ms": percentile(values, 50),
        "p10_ms": percentile(values, 10),
        "p25_ms": p25,
        "p75_ms": p75,
        "p90_ms": percentile(values, 90),
        "iqr_ms": p75 - p25,
        "mean_ms": sum(values) / len(values),
        "min_ms": values[0],
        "max_ms": values[-1],
    }


def time_calls(func, runs, warmup=0):
    """Call ``func()`` ``warmup`` times untimed, then ``runs`` times; return the durations in seconds."""
    for _ in range(int(warmup)):
        func()
    durations = []
    for _ in range(int(runs)):
        start = time.perf_counter()
        func()
        durations.append(time.perf_counter() - start)
    return durations


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def _git_commit():
    try:
        out = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                      stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.decode("ascii", "replace").strip() or None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _jetson_model():
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            return handle.read().decode("ascii", "replace").strip("\x00 \n") or None
    except OSError:
        return None


def environment():
    """Where and with what a result was measured (the numbers mean nothing without it)."""
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "host": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "jetson": _jetson_model(),
        "load_average": load,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "git_commit": _git_commit(),
    }


def command_line(script, argv):
    """The command that reproduces a result."""
    return " ".join(["python", "benchmarks/{}.py".format(script)] + list(argv))


def add_common_arguments(parser):
    parser.add_argument("--out-json", default=None,
                        help="result file (default: benchmarks/results/NAME[-MODULE]-BACKEND-PRECISION.json)")
    parser.add_argument("--doc", default=DOC_PATH,
                        help="markdown regenerated from every JSON beside --out-json (default: %(default)s)")
    parser.add_argument("--no-doc", action="store_true", help="write the JSON only")
    parser.add_argument("--quick", action="store_true",
                        help="few runs on a tiny input: checks the script works, measures nothing useful")


def default_json_path(name, backend, precision, tag=None):
    parts = [name] + ([tag] if tag else []) + [backend, precision]
    return os.path.join(RESULTS_DIR, "{}.json".format("-".join(str(p) for p in parts)))


def write_json(path, data):
    """Write JSON atomically (temporary file + rename)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def finish(result, args, name, tag=None):
    """Write the JSON result, then let ``benchmarks.report`` (the tool above every benchmark) print its
    section and regenerate the markdown; return the JSON path.

    The report runs as its own command: it imports every benchmark's renderer, so importing it here
    would make each benchmark import all the others (and itself).
    """
    result["schema"] = SCHEMA
    result["benchmark"] = name
    path = args.out_json or default_json_path(name, result.get("backend", "any"),
                                              result.get("precision", "any"), tag)
    write_json(path, result)
    command = [sys.executable, "-m", "benchmarks.report", "--show", path,
               "--results", os.path.dirname(os.path.abspath(path)), "--doc", args.doc]
    if args.no_doc:
        command.append("--no-doc")
    print("wrote {}".format(path))
    sys.stdout.flush()
    code = subprocess.call(command, cwd=ROOT)
    if code != 0:
        raise MedkioskError("regenerating the report failed ({} exited with {}). Fix: run that command by "
                            "hand to see why".format(" ".join(command), code))
    return path


def make_video(path, frames, bundle=None):
    """A 640x480 MJPG video at 30 fps: the bundle's golden images (real images of its domain, shown
    in turn as a camera pointed at them would see them) or, without any, synthetic shapes.
    Returns (path, description)."""
    from training.synth import generate_video

    images = [sample.path for sample in bundle.golden_samples()] if bundle is not None else []
    generate_video(path, frames, size=(640, 480), fps=30, images=images or None, seed=3)
    if images:
        return path, "640x480 MJPG video of the bundle's {} golden images".format(len(images))
    return path, "640x480 MJPG video of synthetic shapes (the bundle has no golden images)"


def headless_run_args(bundle, video, frames, backend, precision):
    """``medkiosk run`` arguments for the headless kiosk loop over ``video`` for ``frames`` frames."""
    from edge.bundle import load_bundle

    return ["--models", bundle, "--module", load_bundle(bundle).module_id, "--quiet",
            "--source", "file://" + video, "--output", "null://", "--max-frames", str(frames),
            "--backend", backend, "--precision", precision]


def display_path(path):
    """A path relative to the repository when inside it, else absolute."""
    path = os.path.abspath(str(path))
    if path.startswith(ROOT + os.sep):
        return os.path.relpath(path, ROOT)
    return path


def table(header, rows):
    """Markdown table lines: the header row, its separator, then one line per row; cells are shown with
    ``str`` and an empty cell stays a single space (``| |``)."""

    def line(cells):
        return "|" + "|".join(" {} ".format(cell) if cell != "" else " " for cell in cells) + "|"

    return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows]


def fmt(value, digits=1, suffix=""):
    """A number for a table cell; 'n/a' for None."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return "{}{}".format(value, suffix)
    return "{:.{}f}{}".format(value, digits, suffix)
