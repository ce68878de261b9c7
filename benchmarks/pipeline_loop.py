"""benchmarks/pipeline.py, part 1: the measured kiosk loop.

Inputs (a decoded video, an emulated camera), the stage timers wrapped around the loop's pure
steps, the kiosk built as ``medkiosk run`` builds it, the file-mode and live-mode runs, the CPU
time of the display and inference threads, and py-spy sampling.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

from benchmarks import common

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
        self.cpu = {}  # "display", "inference", "process": CPU seconds over the run
        self.enabled = True
        self.paused = set()  # names of threads whose calls are not recorded now

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
                if self.enabled and threading.current_thread().name not in self.paused:
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

    source.read = times.wrap("capture", source.read)
    sink.write = times.wrap("sink", sink.write)
    opener = kiosk.open_classifier

    def open_instrumented(slot):
        # Loading (and the golden-image check the kiosk runs then) is not a frame's work.
        name = threading.current_thread().name
        times.paused.add(name)
        loading = thread_cpu_s()
        try:
            classifier = opener(slot)
        finally:
            times.paused.discard(name)
            times.cpu["loading"] = times.cpu.get("loading", 0.0) + thread_cpu_s() - loading
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
        # The whole call the inference thread makes per frame (classify, or infer_prepared for a frame
        # prepared by another thread), with its start and end times.
        classifier.classify = times.wrap("classify", classifier.classify)
        classifier.infer_prepared = times.wrap("classify", classifier.infer_prepared)
        classifier.preparer = _counted_preparers(classifier.preparer, times)
        _count_thread_cpu(classifier, times.cpu, "inference")
        return classifier

    kiosk.open_classifier = open_instrumented
    # Live: the kiosk's locate step, run by the prepare thread on each frame it classifies (the
    # newest is the outline); files: the classifier's own prepare() locates them.
    kiosk.locate = times.wrap("locate", kiosk.locate)
    patches = [
        (edge.classify, "locate", times.wrap("locate", edge.classify.locate)),
        (edge.classify, "preprocess", times.wrap("preprocess", edge.classify.preprocess)),
        (edge.classify, "assess_quality", times.wrap("quality", edge.classify.assess_quality)),
        (edge.classify, "postprocess", times.wrap("postprocess", edge.classify.postprocess)),
    ]
    # The loop draws through its OverlayRenderer (draw_overlay with a cached panel).
    kiosk.renderer.draw = times.wrap("overlay", kiosk.renderer.draw)
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


def kiosk_for(args, video, frames):
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


def thread_cpu_s():
    """CPU seconds (user + system) of the calling thread (RUSAGE_THREAD: Linux, Python 3.6 too)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def _count_thread_cpu(classifier, cpu, key):
    """Add the CPU time of the thread that loaded ``classifier`` (from now until it is closed there)."""
    start = thread_cpu_s()
    close = classifier.__exit__

    def closing(*exc):
        cpu[key] = cpu.get(key, 0.0) + thread_cpu_s() - start
        return close(*exc)

    classifier.__exit__ = closing


def _counted_preparers(make_preparer, times):
    """``classifier.preparer`` whose preparers are timed ("prepare" stage) and, on the worker's prepare
    thread, add their CPU time to ``times.cpu["prepare"]``."""

    def make(depth=2):
        prepare = times.wrap("prepare", make_preparer(depth=depth))

        def counted(image, localisation=None):
            if threading.current_thread().name != "prepare":
                return prepare(image, localisation=localisation)
            start = thread_cpu_s()
            try:
                return prepare(image, localisation=localisation)
            finally:
                times.cpu["prepare"] = times.cpu.get("prepare", 0.0) + thread_cpu_s() - start

        return counted

    return make


def run_kiosk(kiosk, source, sink, times, profiler=None):
    """Run the instrumented kiosk to its max_frames on a thread of its own, as `medkiosk run`'s main
    thread runs it (the kiosk lowers its display thread's priority, which this thread must not keep
    for the raw runs after it); return wall seconds. The CPU time of the display thread and of the
    whole process go to ``times.cpu``."""
    failure = []

    def display():
        display_cpu = thread_cpu_s()
        if profiler is not None:
            profiler.enable()
        try:
            with source, sink:
                kiosk.run()
        except BaseException as exc:  # re-raised on the calling thread below
            failure.append(exc)
        finally:
            if profiler is not None:
                profiler.disable()
            times.cpu["display"] = thread_cpu_s() - display_cpu

    with instrument(kiosk, source, sink, times, profiler):
        start = time.perf_counter()
        process_cpu = time.process_time()
        thread = threading.Thread(target=display, name="display")
        thread.start()
        thread.join()
        times.cpu["process"] = time.process_time() - process_cpu
    if failure:
        raise failure[0]
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
        durations = common.time_calls(cycler(runner, tensors), args.raw_runs, warmup=3)
        raw = {"durations": durations, "wall_s": time.perf_counter() - start}
        if all_cores is not None:
            raw["all_cores"] = common.time_calls(cycler(all_cores, tensors), args.raw_runs, warmup=3)
        raw_blocks.append(raw)
        kiosk, source, sink = kiosk_for(args, video, args.frames)
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


def cycler(runner, tensors):
    state = {"i": 0}

    def call():
        runner.infer(tensors[state["i"] % len(tensors)])
        state["i"] += 1

    return call


def run_live_mode(args, frames, log, spy=None):
    """The decoupled loop fed by an emulated CSI camera at ``--camera-fps``."""
    from edge.sources import CsiCamera

    kiosk, _file_source, sink = kiosk_for(args, args.video_path, args.live_frames)
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
