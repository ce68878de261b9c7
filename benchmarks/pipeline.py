"""Pipeline overhead: the real kiosk loop, headless, against the raw inference rate of the same backend.

The kiosk is built exactly as ``medkiosk run --models BUNDLE --source file://VIDEO --output null://``
builds it (``edge.commands.run.build_kiosk``) on a generated 640x480 video, and instrumented by
wrapping its pure steps, never by re-implementing the loop: ``source.read`` (capture/decode),
``edge.classify.preprocess``, the runner's ``infer``, ``edge.classify.assess_quality`` (quality
gate), ``edge.classify.postprocess``, the overlay (``kiosk.renderer.draw``, i.e. ``draw_overlay`` with a
cached panel) and ``sink.write``.

Two modes:

* **file**: a video file or USB images; every frame is drawn with its own result. The loop is a
  depth-1 pipeline: the display thread decodes, preprocesses and quality-checks frame N+1 and hands
  it to the inference thread before drawing frame N, so end-to-end frames per second =
  1 / max(display thread's work, inference thread's work) per frame. Each stage is attributed to
  the thread that really ran it.
* **live**: a camera; capture, inference and display are decoupled. A CSI camera is emulated
  (``edge.sources.CsiCamera`` with a capture object replaying the decoded video at
  ``--camera-fps``: no camera exists here). Reported: results per second, displayed frames per
  second and the age of each result when first displayed (``Kiosk.result_ages``).

Raw inference: the same backend, precision and CPU thread count as the kiosk (``open_runner``;
the kiosk's ``cpu_threads``, by default all cores but one) on the preprocessed tensors of the same
video frames, timed in blocks interleaved with the file-mode kiosk runs, so the end-to-end / raw
ratio is measured under the same machine load. For ONNX Runtime the blocks also time raw
inference with the runtime's own default (all cores), the fastest the model runs here with
nothing beside it: the kiosk against that is reported too.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NAME = "pipeline"
RATIO_GOAL = 0.95
DEFAULT_BUNDLE = os.path.join(common.ROOT, "models", "chest")
THREAD_LABELS = {"MainThread": "display thread (MainThread)", "inference": "inference thread"}
CLASSIFY_STAGES = ("preprocess", "inference", "quality", "postprocess")
STAGES = (
    ("capture", "capture/decode (source.read)"),
    ("preprocess", "preprocess (resize, colour, NCHW)"),
    ("inference", "inference (runner.infer)"),
    ("quality", "quality gate (assess_quality)"),
    ("postprocess", "postprocess (top-3, uncertain)"),
    ("overlay", "overlay (renderer.draw)"),
    ("sink", "sink (null:// write)"),
)


# ---- inputs ---------------------------------------------------------------------------------------


def decode_all(video, limit=None):
    import cv2

    capture = cv2.VideoCapture(video)
    frames = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames


class ReplayCapture(object):
    """A cv2.VideoCapture stand-in for a camera: returns decoded frames in a loop at ``fps``."""

    def __init__(self, frames, fps):
        self.frames = frames
        self.interval = 1.0 / float(fps)
        self._next = None
        self._index = 0

    def isOpened(self):  # noqa: N802 (the cv2.VideoCapture interface)
        return True

    def read(self):
        now = time.monotonic()
        if self._next is None:
            self._next = now
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + self.interval, time.monotonic() - self.interval)
        frame = self.frames[self._index % len(self.frames)].copy()  # a camera delivers a fresh buffer
        self._index += 1
        return True, frame

    def set(self, *args):
        return True

    def release(self):
        pass


# ---- instrumentation ------------------------------------------------------------------------------


class StageTimes(object):
    """Durations per stage, recorded by wrappers around the loop's steps (from any thread)."""

    def __init__(self):
        self.samples = {}
        self.stamps = {}
        self.threads = {}  # stage -> {thread name: calls}
        self.enabled = True

    def wrap(self, stage, func):
        samples = self.samples.setdefault(stage, [])
        stamps = self.stamps.setdefault(stage, [])
        threads = self.threads.setdefault(stage, {})

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                end = time.perf_counter()
                if self.enabled:
                    samples.append(end - start)
                    stamps.append((start, end))
                    name = threading.current_thread().name
                    threads[name] = threads.get(name, 0) + 1

        timed.__wrapped__ = func
        return timed


class Patched(object):
    """Replace module attributes for the duration of a ``with`` block."""

    def __init__(self, replacements):
        self.replacements = replacements  # [(module, name, new)]
        self.saved = []

    def __enter__(self):
        for module, name, new in self.replacements:
            self.saved.append((module, name, getattr(module, name)))
            setattr(module, name, new)
        return self

    def __exit__(self, *exc):
        for module, name, old in reversed(self.saved):
            setattr(module, name, old)
        self.saved = []
        return False


def instrument(kiosk, source, sink, times, profiler=None):
    """Wrap the kiosk's steps (instance and module attributes); return the Patched context."""
    import edge.classify
    import edge.kiosk

    source.read = times.wrap("capture", source.read)
    sink.write = times.wrap("sink", sink.write)
    opener = kiosk.open_classifier

    def open_instrumented(slot):
        classifier = opener(slot)
        runner = classifier.runner
        runner.infer = times.wrap("inference", runner.infer)
        if profiler is not None:
            classify = classifier.classify

            def profiled(image):
                profiler.enable()
                try:
                    return classify(image)
                finally:
                    profiler.disable()

            classifier.classify = profiled
        # The whole classify call as the inference thread makes it, with its start and end times.
        classifier.classify = times.wrap("classify", classifier.classify)
        return classifier

    kiosk.open_classifier = open_instrumented
    patches = [
        (edge.classify, "preprocess", times.wrap("preprocess", edge.classify.preprocess)),
        (edge.classify, "assess_quality", times.wrap("quality", edge.classify.assess_quality)),
        (edge.classify, "postprocess", times.wrap("postprocess", edge.classify.postprocess)),
    ]
    renderer = getattr(kiosk, "renderer", None)
    if renderer is not None and hasattr(renderer, "draw"):
        # The loop draws through its OverlayRenderer (draw_overlay with a cached panel).
        renderer.draw = times.wrap("overlay", renderer.draw)
    else:
        patches.append((edge.kiosk, "draw_overlay", times.wrap("overlay", edge.kiosk.draw_overlay)))
    return Patched(patches)


def ort_tuning(spinning="default"):
    """Experiment: every ONNX Runtime session this process creates gets these options.

    The runners (``edge.backends.onnxruntime``) build ``onnxruntime.SessionOptions()``; replacing
    that factory for the run changes both the raw and the kiosk's sessions alike.
    """
    if spinning == "default":
        return Patched([])
    import onnxruntime

    base = onnxruntime.SessionOptions

    def session_options():
        options = base()
        if spinning == "off":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    return Patched([(onnxruntime, "SessionOptions", session_options)])


# ---- the kiosk as `medkiosk run` builds it ---------------------------------------------------------


def build_kiosk(bundle, video, backend, precision, frames, engine_cache=None, config=None, cpu_threads=None):
    """(kiosk, source, sink) from ``edge.commands.run.build_kiosk`` with headless arguments."""
    from edge.commands import run as run_command

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    argv = common.headless_run_args(bundle, video, frames, backend, precision)
    if config:
        argv += ["--config", config]
    if cpu_threads:
        argv += ["--cpu-threads", str(cpu_threads)]
    args = parser.parse_args(argv)
    kiosk, source, sink = run_command.build_kiosk(args)
    if engine_cache:
        # `medkiosk run` takes the engine cache from its config only; same opener, other folder.
        from edge.config import resolve_cpu_threads
        from edge.kiosk import default_classifier_opener

        settings = kiosk_config(config)
        threads = resolve_cpu_threads(cpu_threads or settings.kiosk["cpu_threads"])
        kiosk.open_classifier = default_classifier_opener(
            backend, precision, engine_cache, settings.quality, threads=threads
        )
    return kiosk, source, sink


def _kiosk_for(args, video, frames):
    """build_kiosk with this run's bundle, backend, precision, engine cache, config and threads."""
    return build_kiosk(
        args.bundle,
        video,
        args.backend,
        args.precision,
        frames,
        args.engine_cache,
        args.config,
        args.cpu_threads,
    )


def kiosk_config(path=None):
    """The configuration `medkiosk run` reads (its default file when ``path`` is None)."""
    from edge.config import load_config

    return load_config(path)


def run_kiosk(kiosk, source, sink, times, profiler=None):
    """Run the instrumented kiosk to its max_frames; return wall seconds."""
    with instrument(kiosk, source, sink, times, profiler):
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            with source, sink:
                kiosk.run()
        finally:
            if profiler is not None:
                profiler.disable()
    return time.perf_counter() - start


def steady(values, skip):
    return values[skip:] if len(values) > skip + 1 else values


def ends(spans):
    return [end for _start, end in spans]


def throughput(spans):
    """Events per second from their (start, end) spans: completions after the first one, per second."""
    stamps = ends(spans)
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def intervals(spans):
    stamps = ends(spans)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def gaps(spans):
    """Idle time between one span's end and the next one's start."""
    return [max(0.0, nxt[0] - cur[1]) for cur, nxt in zip(spans, spans[1:])]


def run_file_mode(args, video, times_blocks, raw_blocks, runner, tensors, log, all_cores=None):
    """Blocks of (raw inference, [raw on all cores,] file-mode kiosk), interleaved."""
    import edge.kiosk  # noqa: F401 (imported before timing)

    for block in range(args.blocks):
        start = time.perf_counter()
        durations = common.time_calls(_cycler(runner, tensors), args.raw_runs, warmup=3)
        raw = {"durations": durations, "wall_s": time.perf_counter() - start}
        if all_cores is not None:
            raw["all_cores"] = common.time_calls(_cycler(all_cores, tensors), args.raw_runs, warmup=3)
        raw_blocks.append(raw)
        kiosk, source, sink = _kiosk_for(args, video, args.frames)
        times = StageTimes()
        wall = run_kiosk(kiosk, source, sink, times)
        if kiosk.failures:
            raise RuntimeError(
                "the kiosk reported {} frame failures: {}".format(kiosk.failures, kiosk.last_error)
            )
        times_blocks.append({"times": times, "wall_s": wall, "frames": kiosk.frames})
        log(
            "block {}/{}: raw {:.1f}/s, kiosk {:.1f} frames/s".format(
                block + 1,
                args.blocks,
                len(durations) / sum(durations),
                throughput(steady(times.stamps["sink"], args.skip)) or 0.0,
            )
        )


def _cycler(runner, tensors):
    state = {"i": 0}

    def call():
        runner.infer(tensors[state["i"] % len(tensors)])
        state["i"] += 1

    return call


def run_live_mode(args, frames, log, spy=None):
    """The decoupled loop fed by an emulated CSI camera at ``--camera-fps``."""
    from edge.sources import CsiCamera

    kiosk, _file_source, sink = _kiosk_for(args, args.video_path, args.live_frames)
    camera = CsiCamera(
        fps=args.camera_fps, capture_factory=lambda _pipeline: ReplayCapture(frames, args.camera_fps)
    )
    kiosk.source = camera
    times = StageTimes()
    if spy is not None:
        spy.start()
    try:
        wall = run_kiosk(kiosk, camera, sink, times)
    finally:
        if spy is not None:
            spy.summary = spy.stop()
    if kiosk.failures:
        raise RuntimeError(
            "the live kiosk reported {} frame failures: {}".format(kiosk.failures, kiosk.last_error)
        )
    log("live: {} frames displayed, {} results".format(kiosk.frames, len(times.samples.get("inference", []))))
    return kiosk, times, wall


class PySpy(object):
    """py-spy sampling this very process (all threads) while the live kiosk runs."""

    IDLE = ("Condition.wait", "wait", "sleep", "ReplayCapture.read", "select", "poll")

    def __init__(self, rate=100):
        import shutil
        import subprocess

        self.subprocess = subprocess
        self.rate = int(rate)
        self.exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.isfile(self.exe):
            from edge.errors import MissingDependencyError

            raise MissingDependencyError(
                "--py-spy needs py-spy: pip install py-spy (and ptrace rights: root, "
                "or kernel.yama.ptrace_scope=0)"
            )
        self.process = None
        self.path = None
        self.summary = None

    def start(self):
        import signal  # noqa: F401 (SIGINT below)

        handle, self.path = tempfile.mkstemp(suffix=".txt", prefix="py-spy-")
        os.close(handle)
        self.process = self.subprocess.Popen(
            [
                self.exe,
                "record",
                "--pid",
                str(os.getpid()),
                "--threads",
                "--nonblocking",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                self.path,
            ],
            stdout=self.subprocess.DEVNULL,
            stderr=self.subprocess.PIPE,
        )
        time.sleep(1.0)  # let it attach before the loop starts
        if self.process.poll() is not None:
            raise RuntimeError(
                "py-spy could not attach: {}".format(
                    self.process.stderr.read().decode("utf-8", "replace").strip()
                )
            )

    def stop(self):
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            _out, err = self.process.communicate(timeout=60)
        except self.subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
        try:
            with open(self.path) as handle:
                return summarize_py_spy(handle.read().splitlines(), self.rate, self.IDLE)
        finally:
            os.remove(self.path)


def summarize_py_spy(lines, rate, idle_names, top=8):
    """Per thread: samples, share of its samples waiting, and the leaf functions where time goes."""
    import re

    threads = {}
    for line in lines:
        stack, _sep, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = frames[0]
        name = head.split(": ", 1)[1] if ": " in head else "(unnamed)"
        name = re.sub(r"^(grab) .*", r"\1", name)
        leaf = re.sub(r" \(.*", "", frames[-1]) if len(frames) > 1 else "(no Python frame)"
        entry = threads.setdefault(name, {"samples": 0, "idle": 0, "leaves": {}})
        entry["samples"] += int(count)
        entry["leaves"][leaf] = entry["leaves"].get(leaf, 0) + int(count)
        if leaf.split(".")[-1] in idle_names or leaf in idle_names:
            entry["idle"] += int(count)
    total = sum(t["samples"] for t in threads.values()) or 1
    summary = []
    for name, entry in sorted(threads.items(), key=lambda item: -item[1]["samples"]):
        leaves = sorted(entry["leaves"].items(), key=lambda item: -item[1])[:top]
        summary.append(
            {
                "thread": name,
                "samples": entry["samples"],
                "share": entry["samples"] / float(total),
                "seconds": entry["samples"] / float(rate),
                "idle_share": entry["idle"] / float(entry["samples"]),
                "top": [
                    {"function": leaf, "samples": n, "share_of_thread": n / float(entry["samples"])}
                    for leaf, n in leaves
                ],
            }
        )
    return {"rate_hz": rate, "threads": summary}


# ---- summary --------------------------------------------------------------------------------------


def stage_summary(blocks, skip):
    merged = {}
    for block in blocks:
        for stage, values in block["times"].samples.items():
            merged.setdefault(stage, []).extend(steady(values, skip))
    return {stage: common.summarize(values) for stage, values in merged.items()}


def stage_threads(blocks):
    """stage -> the thread that ran most of its calls (file mode: "MainThread" draws, "inference" infers)."""
    counts = {}
    for block in blocks:
        for stage, threads in block["times"].threads.items():
            for name, calls in threads.items():
                counts.setdefault(stage, {}).setdefault(name, 0)
                counts[stage][name] += calls
    return {stage: max(names, key=names.get) for stage, names in counts.items() if names}


def summarize_file_mode(times_blocks, raw_blocks, skip):
    per_block = []
    for timed, raw in zip(times_blocks, raw_blocks):
        e2e = throughput(steady(timed["times"].stamps["sink"], skip))
        raw_rate = len(raw["durations"]) / sum(raw["durations"])
        entry = {
            "end_to_end_fps": e2e,
            "raw_inference_fps": raw_rate,
            "ratio": None if e2e is None else e2e / raw_rate,
            "frames": timed["frames"],
        }
        if raw.get("all_cores"):
            all_rate = len(raw["all_cores"]) / sum(raw["all_cores"])
            entry["raw_all_cores_fps"] = all_rate
            entry["ratio_all_cores"] = None if e2e is None else e2e / all_rate
        per_block.append(entry)
    ratios = sorted(b["ratio"] for b in per_block if b["ratio"] is not None)
    ratios_all = sorted(b["ratio_all_cores"] for b in per_block if b.get("ratio_all_cores") is not None)
    raw_all = [d for raw in raw_blocks for d in raw["durations"]]
    raw_all_cores = [d for raw in raw_blocks for d in raw.get("all_cores") or []]
    stages = stage_summary(times_blocks, skip)
    frame_times = []
    for block in times_blocks:
        frame_times.extend(intervals(steady(block["times"].stamps["sink"], skip)))
    frame = common.summarize(frame_times)
    # Means add up where medians do not: the time each stage spent between the first and the last
    # steady frame shown, per frame shown in that window (frames are sequential in file mode).
    mean_frame_ms = 1000.0 * sum(frame_times) / len(frame_times) if frame_times else None
    totals, shown = {}, 0
    for block in times_blocks:
        sinks = steady(block["times"].stamps["sink"], skip)
        if len(sinks) < 2:
            continue
        first, last = sinks[0][1], sinks[-1][1]
        shown += len(sinks) - 1
        for key, _label in STAGES:
            spans = block["times"].stamps.get(key, [])
            totals[key] = totals.get(key, 0.0) + sum(e - b for b, e in spans if first < e <= last)
    mean_ms = {key: 1000.0 * total / shown for key, total in totals.items()} if shown else {}
    threads = stage_threads(times_blocks)
    # Pipelined: each thread's own stages must fit in a frame; the busier thread sets the pace.
    busy = {}
    for key, mean in mean_ms.items():
        name = threads.get(key)
        if name is not None:
            busy[name] = busy.get(name, 0.0) + mean
    return {
        "blocks": per_block,
        "ratio_median": common.percentile(ratios, 50) if ratios else None,
        "ratio_min": ratios[0] if ratios else None,
        "ratio_max": ratios[-1] if ratios else None,
        "end_to_end_fps_median": 1000.0 / frame["median_ms"] if frame.get("n") else None,
        "raw_inference": common.summarize(raw_all),
        "raw_inference_fps_median": 1000.0 / common.summarize(raw_all)["median_ms"],
        "frame": frame,
        "stages": stages,
        "mean_frame_ms": mean_frame_ms,
        "stage_mean_ms": mean_ms,
        "stage_threads": threads,
        "thread_busy_mean_ms": busy,
        "raw_all_cores": common.summarize(raw_all_cores) if raw_all_cores else None,
        "ratio_all_cores_median": common.percentile(ratios_all, 50) if ratios_all else None,
    }


def classify_times(times, skip):
    """Seconds per classify (preprocess + inference + quality gate + postprocess), frame by frame."""
    parts = [steady(times.samples.get(stage, []), skip) for stage in CLASSIFY_STAGES]
    if not all(parts):
        return []
    return [sum(values) for values in zip(*parts)]


def summarize_live(kiosk, times, wall, camera_fps, skip, raw_fps):
    infer_stamps = steady(times.stamps.get("inference", []), skip)
    display_stamps = steady(times.stamps.get("sink", []), skip)
    results_fps = throughput(infer_stamps)
    display_fps = throughput(display_stamps)
    ages = steady(kiosk.result_ages, skip)
    classify = classify_times(times, skip)
    display_frame = common.summarize(intervals(display_stamps))
    worker = steady(times.stamps.get("classify", []), skip)
    worker_busy = None
    if len(worker) > 1 and worker[-1][1] > worker[0][0]:
        worker_busy = sum(end - start for start, end in worker) / (worker[-1][1] - worker[0][0])
    ceiling = min(raw_fps, camera_fps) if raw_fps else camera_fps
    # "Never older than one inference plus one frame", result by result: each live result is shown
    # in order (one job at a time), so the i-th age pairs with the i-th classify call; what the age
    # holds beyond its own inference (hand-over + display pick-up) must fit in one camera frame.
    excess = [age - (end - start) for age, (start, end) in zip(ages, worker)]
    frame_s = 1.0 / camera_fps
    age_summary = common.summarize(ages) if ages else {"n": 0}
    return {
        "camera_fps": camera_fps,
        "frames_displayed": kiosk.frames,
        "wall_s": wall,
        "display_fps": display_fps,
        "display_frame": display_frame,
        "results_fps": results_fps,
        "results_ceiling_fps": ceiling,
        "ratio": None if results_fps is None else results_fps / ceiling,
        "inference": common.summarize(steady(times.samples.get("inference", []), skip)),
        "classify": common.summarize(classify),
        "worker_call": common.summarize([end - start for start, end in worker]),
        "worker_idle": common.summarize(gaps(worker)),
        "worker_busy_fraction": worker_busy,
        "stages": {stage: common.summarize(steady(values, skip)) for stage, values in times.samples.items()},
        "result_age": age_summary,
        "age_beyond_inference": common.summarize(excess) if excess else {"n": 0},
        "age_bound_ms": 1000.0 * frame_s,
        "age_ok": None if not excess else max(excess) <= frame_s,
    }


def profile_rows(profiler, top):
    """The functions where the time goes (own time), as shares of the profiled total."""
    import pstats

    stats = pstats.Stats(profiler)
    total = stats.total_tt or 1e-12
    rows = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append(
            {
                "function": "{}:{}({})".format(_short(filename), line, func),
                "calls": calls,
                "own_s": tottime,
                "own_share": tottime / total,
                "cumulative_s": cumtime,
                "cumulative_share": cumtime / total,
            }
        )
    rows.sort(key=lambda r: -r["own_s"])
    return {"total_s": total, "top": rows[:top]}


def _short(filename):
    for marker in ("site-packages" + os.sep, common.ROOT + os.sep):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ---- main -----------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/pipeline.py", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help="model bundle (default: %(default)s)")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt"))
    parser.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "fp16", "int8"),
        help="default: fp32 for onnxruntime, fp16 for tensorrt",
    )
    parser.add_argument("--engine-cache", default=None, help="TensorRT engine cache folder")
    parser.add_argument("--config", default=None, help="kiosk INI config (default: the kiosk's own default)")
    parser.add_argument("--frames", type=int, default=100, help="frames per file-mode kiosk run")
    parser.add_argument("--raw-runs", type=int, default=100, help="raw inferences per block")
    parser.add_argument(
        "--blocks",
        type=int,
        default=8,
        help="interleaved (raw, kiosk) blocks; short blocks follow the machine's drift",
    )
    parser.add_argument("--skip", type=int, default=10, help="warm-up frames excluded from each run")
    parser.add_argument("--camera-fps", type=float, default=30.0, help="emulated camera rate, live mode")
    parser.add_argument(
        "--live-frames", type=int, default=300, help="displayed frames in live mode (0: skip)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run one file-mode kiosk under cProfile and report where the time goes",
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample every thread of the live-mode run with py-spy (needs py-spy and ptrace rights)",
    )
    parser.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--ort-spinning",
        choices=("default", "off"),
        default="default",
        help="experiment: ONNX Runtime sessions of this process (raw and kiosk) without busy-waiting "
        "intra-op threads (what the runner would gain by setting it)",
    )
    parser.add_argument(
        "--cpu-threads",
        default=None,
        help="CPU inference threads of the kiosk and of raw inference: auto or a number (default: the "
        "kiosk config's cpu_threads, i.e. what `medkiosk run` would use)",
    )
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.precision is None:
        args.precision = "fp16" if args.backend == "tensorrt" else "fp32"
    if args.quick:
        args.frames = min(args.frames, 12)
        args.raw_runs = min(args.raw_runs, 10)
        args.blocks = min(args.blocks, 2)
        args.skip = min(args.skip, 2)
        args.live_frames = min(args.live_frames, 12)
        args.profile_top = min(args.profile_top, 10)
    return args


def measure(args, workdir, log=print):
    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.preprocess import preprocess

    bundle = load_bundle(args.bundle)
    video_frames = max(args.frames, 60)
    args.video_path, args.video_desc = common.make_video(
        os.path.join(workdir, "clip.avi"), video_frames, bundle
    )
    frames = decode_all(args.video_path)
    tensors = [preprocess(frame, bundle.description.input) for frame in frames]
    if args.backend == "tensorrt" and not args.engine_cache:
        # The kiosk looks for engines where its config says; build (or find) the raw runner's there too.
        args.engine_cache = kiosk_config(args.config).kiosk["engine_cache"]
    from edge.config import resolve_cpu_threads

    args.threads = resolve_cpu_threads(args.cpu_threads or kiosk_config(args.config).kiosk["cpu_threads"])
    runner = open_runner(
        bundle,
        backend=args.backend,
        precision=args.precision,
        engine_cache=args.engine_cache,
        allow_build=True,
        threads=args.threads,
    )
    # ONNX Runtime on all cores (its default), with nothing beside it: the fastest raw rate here.
    all_cores = (
        open_runner(bundle, backend="onnxruntime", precision=args.precision)
        if (args.backend == "onnxruntime")
        else None
    )
    times_blocks, raw_blocks = [], []
    with runner:
        runner_desc = {
            "describe": runner.describe(),
            "provider": runner.provider,
            "precision": runner.precision,
            "notices": runner.notices(),
            "cpu_threads": args.threads,
        }
        if all_cores is not None:
            all_cores.load()
        try:
            run_file_mode(args, args.video_path, times_blocks, raw_blocks, runner, tensors, log, all_cores)
        finally:
            if all_cores is not None:
                all_cores.close()
    file_mode = summarize_file_mode(times_blocks, raw_blocks, args.skip)
    live = None
    if args.live_frames > 0:
        kiosk, times, wall = run_live_mode(args, frames, log)
        live = summarize_live(
            kiosk, times, wall, args.camera_fps, args.skip, file_mode["raw_inference_fps_median"]
        )
        if args.py_spy:
            # A separate run: sampling perturbs the loop, so it never shares a run with the numbers.
            spy = PySpy(args.py_spy_rate)
            run_live_mode(args, frames, log, spy=spy)
            live["py_spy"] = spy.summary
    profile = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        kiosk, source, sink = _kiosk_for(args, args.video_path, args.frames)
        run_kiosk(kiosk, source, sink, StageTimes(), profiler=profiler)
        profile = profile_rows(profiler, args.profile_top)
    return bundle, runner_desc, file_mode, live, profile


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = common.environment()
    workdir = tempfile.mkdtemp(prefix="medkiosk-bench-pipeline-")
    try:
        with ort_tuning(args.ort_spinning):
            bundle, runner_desc, file_mode, live, profile = measure(args, workdir)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    spec = bundle.description.input
    result = {
        "title": "Pipeline overhead ({} {}{}), {}".format(
            args.backend,
            args.precision,
            ""
            if args.backend != "onnxruntime"
            else ", {} CPU inference thread{}".format(args.threads, "" if args.threads == 1 else "s"),
            bundle.bundle_id,
        ),
        "command": common.command_line(NAME, argv),
        "environment": env,
        "backend": args.backend,
        "precision": args.precision,
        "runner": runner_desc,
        "bundle": common.display_path(args.bundle),
        "model": {
            "arch": bundle.description.arch,
            "input": "{}x{} {}".format(spec.height, spec.width, spec.colour),
        },
        "video": args.video_desc,
        "settings": {
            "frames": args.frames,
            "raw_runs": args.raw_runs,
            "blocks": args.blocks,
            "skip": args.skip,
            "camera_fps": args.camera_fps,
            "live_frames": args.live_frames,
            "ort_spinning": args.ort_spinning,
            "cpu_threads": args.threads,
            "cpu_threads_setting": args.cpu_threads or "config",
        },
        "quick": args.quick,
        "file_mode": file_mode,
        "live_mode": live,
        "profile": profile,
        "goals": {
            "ratio_goal": RATIO_GOAL,
            "file_mode_ratio_ok": None
            if file_mode["ratio_median"] is None
            else file_mode["ratio_median"] >= RATIO_GOAL,
            "live_ratio_ok": None if not live or live["ratio"] is None else live["ratio"] >= RATIO_GOAL,
            "live_age_ok": None if not live else live["age_ok"],
        },
    }
    tag = bundle.module_id
    if args.ort_spinning != "default":
        tag += "-ort-spin{}".format(args.ort_spinning)
    if args.cpu_threads:
        tag += "-threads{}".format(args.cpu_threads)
    common.finish(result, args, NAME, tag=tag)
    return 0


# ---- markdown -------------------------------------------------------------------------------------


def _verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def render_markdown(result):
    env = result["environment"]
    fm = result["file_mode"]
    settings = result["settings"]
    title = result["title"]
    if settings.get("ort_spinning", "default") != "default":
        title += " - experiment: ONNX Runtime spinning {}".format(settings["ort_spinning"])
    if result.get("live_mode") and settings.get("camera_fps") != 30.0:
        title += " - stress: camera emulated at {:g} fps".format(settings["camera_fps"])
    threads = result["runner"].get("cpu_threads")
    lines = ["## {}".format(title), ""]
    lines.append(
        "Measured {} on {} ({} CPUs; load average {}), Python {}, onnxruntime {}; runner: {}{}; bundle `{}` "
        "({} {}); {}; {} interleaved blocks of {} raw inferences and a {}-frame kiosk run, first {} "
        "frames of each run excluded{}.".format(
            env["date"],
            env.get("jetson") or env.get("cpu") or env["machine"],
            env["cpu_count"],
            env["load_average"],
            env["python"],
            env["onnxruntime"],
            result["runner"]["describe"],
            ""
            if threads is None
            else ", {} CPU inference thread{}".format(threads, "" if threads == 1 else "s"),
            result["bundle"],
            result["model"]["arch"],
            result["model"]["input"],
            result["video"],
            settings["blocks"],
            settings["raw_runs"],
            settings["frames"],
            settings["skip"],
            " (**--quick: not a measurement**)" if result.get("quick") else "",
        )
    )
    lines.append("")
    lines.append("Command: `{}`".format(result["command"]))
    lines.append("")
    if settings.get("ort_spinning", "default") != "default":
        lines.append(
            "**Experiment**: every ONNX Runtime session of this run (raw and kiosk) was created with "
            "intra-op spinning {}.".format(settings["ort_spinning"])
        )
        lines.append("")
    lines.append(
        "### File mode (video file or USB images: every frame drawn with its own result, depth-1 pipeline)"
    )
    lines.append("")
    lines.append(
        "The display thread (`MainThread`) decodes and prepares frame N+1 and hands it to the `inference` "
        "thread before drawing frame N. Each stage is listed under the thread that ran it; a thread's "
        "busy time per frame shown must fit in the frame time, and the busier thread sets the pace."
    )
    lines.append("")
    lines.append("| stage | thread | median (ms) | IQR (ms) | p90 (ms) | mean per frame shown (ms) |")
    lines.append("|---|---|---|---|---|---|")
    means = fm.get("stage_mean_ms") or {}
    stage_threads = fm.get("stage_threads") or {}
    for key, label in STAGES:
        stage = fm["stages"].get(key)
        if not stage or not stage.get("n"):
            continue
        lines.append(
            "| {} | {} | {:.2f} | {:.2f} | {:.2f} | {} |".format(
                label,
                stage_threads.get(key, "?"),
                stage["median_ms"],
                stage["iqr_ms"],
                stage["p90_ms"],
                common.fmt(means.get(key), 2),
            )
        )
    frame = fm["frame"]
    mean_frame = fm.get("mean_frame_ms")
    for name, busy in sorted((fm.get("thread_busy_mean_ms") or {}).items()):
        lines.append(
            "| *{} busy* | | | | | {:.2f} ({}) |".format(
                THREAD_LABELS.get(name, name + " thread"),
                busy,
                "n/a" if not mean_frame else "{:.0%} of the frame".format(busy / mean_frame),
            )
        )
    lines.append(
        "| **whole frame (sink to sink)** | | **{:.2f}** | {:.2f} | {:.2f} | {} |".format(
            frame["median_ms"], frame["iqr_ms"], frame["p90_ms"], common.fmt(mean_frame, 2)
        )
    )
    lines.append("")
    raw = fm["raw_inference"]
    lines.append(
        "- Raw inference, same runner settings{}, same preprocessed tensors: median {:.2f} ms (IQR {:.2f}, "
        "p90 {:.2f}) = {:.1f} inferences/s.".format(
            "" if threads is None else " ({} CPU thread{})".format(threads, "" if threads == 1 else "s"),
            raw["median_ms"],
            raw["iqr_ms"],
            raw["p90_ms"],
            fm["raw_inference_fps_median"],
        )
    )
    lines.append(
        "- End-to-end: {:.1f} frames/s (median frame time).".format(fm["end_to_end_fps_median"] or 0.0)
    )
    lines.append(
        "- End-to-end / raw throughput per block: {}; median **{}** (goal >= {:.2f}: **{}**).".format(
            ", ".join("{:.2f}".format(b["ratio"]) for b in fm["blocks"] if b["ratio"] is not None),
            common.fmt(fm["ratio_median"], 2),
            result["goals"]["ratio_goal"],
            _verdict(result["goals"]["file_mode_ratio_ok"]),
        )
    )
    all_cores = fm.get("raw_all_cores")
    if all_cores and all_cores.get("n"):
        lines.append(
            "- For comparison, raw inference with ONNX Runtime's default threads (all cores) and nothing "
            "beside it: median {:.2f} ms = {:.1f} inferences/s; end-to-end / that, per block median "
            "{}. On a CPU backend the loop's own work (decode, preprocess, overlay) needs a core too; on a "
            "Jetson inference runs on the GPU.".format(
                all_cores["median_ms"],
                1000.0 / all_cores["median_ms"],
                common.fmt(fm.get("ratio_all_cores_median"), 2),
            )
        )
    lines.append("")
    live = result.get("live_mode")
    if live:
        lines.append(
            "### Live mode (camera emulated at {:g} fps; capture, inference and display decoupled)".format(
                live["camera_fps"]
            )
        )
        lines.append("")
        lines.append("| measure | value |")
        lines.append("|---|---|")
        lines.append("| displayed frames/s | {} |".format(common.fmt(live["display_fps"], 1)))
        lines.append("| results/s (inferences completed) | {} |".format(common.fmt(live["results_fps"], 1)))
        lines.append(
            "| ceiling: min(raw inference/s, camera fps) | {} |".format(
                common.fmt(live["results_ceiling_fps"], 1)
            )
        )
        lines.append(
            "| results/s / ceiling (goal >= {:.2f}) | **{}** ({}) |".format(
                result["goals"]["ratio_goal"],
                common.fmt(live["ratio"], 2),
                _verdict(result["goals"]["live_ratio_ok"]),
            )
        )
        lines.append(
            "| inference in the loop, median / p90 (ms) | {} / {} |".format(
                common.fmt(live["inference"].get("median_ms"), 2),
                common.fmt(live["inference"].get("p90_ms"), 2),
            )
        )
        lines.append(
            "| classify in the loop (preprocess + inference + quality + postprocess), median / max (ms) "
            "| {} / {} |".format(
                common.fmt(live["classify"].get("median_ms"), 2),
                common.fmt(live["classify"].get("max_ms"), 2),
            )
        )
        lines.append(
            "| displayed frame interval, median / p90 (ms) | {} / {} |".format(
                common.fmt(live["display_frame"].get("median_ms"), 1),
                common.fmt(live["display_frame"].get("p90_ms"), 1),
            )
        )
        lines.append(
            "| inference thread: busy fraction; idle between classifies, median / p90 (ms) "
            "| {}; {} / {} |".format(
                "n/a"
                if live.get("worker_busy_fraction") is None
                else "{:.0%}".format(live["worker_busy_fraction"]),
                common.fmt(live["worker_idle"].get("median_ms"), 1),
                common.fmt(live["worker_idle"].get("p90_ms"), 1),
            )
        )
        age = live["result_age"]
        lines.append(
            "| result age when first shown, median / p90 / max (ms) | {} / {} / {} |".format(
                common.fmt(age.get("median_ms"), 1),
                common.fmt(age.get("p90_ms"), 1),
                common.fmt(age.get("max_ms"), 1),
            )
        )
        beyond = live["age_beyond_inference"]
        lines.append(
            "| age minus that result's own classify time, median / p90 / max (ms); goal <= one camera "
            "frame ({}) | {} / {} / {} (**{}**) |".format(
                common.fmt(live["age_bound_ms"], 1),
                common.fmt(beyond.get("median_ms"), 1),
                common.fmt(beyond.get("p90_ms"), 1),
                common.fmt(beyond.get("max_ms"), 1),
                _verdict(live["age_ok"]),
            )
        )
        lines.append("")
    spy = (live or {}).get("py_spy")
    if spy:
        lines.append(
            "### Live mode, every thread (py-spy at {} Hz in a separate run; active samples)".format(
                spy["rate_hz"]
            )
        )
        lines.append("")
        lines.append("| thread | active samples (s) | where its active time goes |")
        lines.append("|---|---|---|")
        for thread in spy["threads"]:
            lines.append(
                "| {} | {:.1f} | {} |".format(
                    thread["thread"],
                    thread["seconds"],
                    ", ".join(
                        "`{}` {:.0%}".format(t["function"], t["share_of_thread"]) for t in thread["top"][:6]
                    ),
                )
            )
        lines.append("")
    profile = result.get("profile")
    if profile:
        lines.append("### Where the time goes (cProfile, one file-mode run, own time)")
        lines.append("")
        lines.append("| function | calls | own (s) | share | cumulative share |")
        lines.append("|---|---|---|---|---|")
        for row in profile["top"]:
            lines.append(
                "| `{}` | {} | {:.3f} | {:.1%} | {:.1%} |".format(
                    row["function"], row["calls"], row["own_s"], row["own_share"], row["cumulative_share"]
                )
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
