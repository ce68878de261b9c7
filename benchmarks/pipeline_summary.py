"""benchmarks/pipeline.py, part 2: the measured runs summarised (ratios, stage means, live rates and ages)."""

import os

from benchmarks import common
from benchmarks.pipeline_loop import gaps, intervals, steady, throughput

RATIO_GOAL = 0.95
CLASSIFY_STAGES = ("preprocess", "inference", "quality", "postprocess")
LOCALISED_STAGES = ("locate",)  # run only for bundles that locate the X-ray (edge.classify.localises)
STAGES = (
    ("capture", "capture/decode (source.read)"),
    ("locate", "locate the X-ray (edge.locate; X-ray modules only)"),
    ("preprocess", "preprocess (resize, colour, NCHW)"),
    ("inference", "inference (runner.infer)"),
    ("quality", "quality gate (assess_quality)"),
    ("postprocess", "postprocess (top-3, uncertain)"),
    ("overlay", "overlay (renderer.draw)"),
    ("sink", "sink (null:// write)"),
)


def stage_summary(blocks, skip):
    merged = {}
    for block in blocks:
        for stage, values in block["times"].samples.items():
            merged.setdefault(stage, []).extend(steady(values, skip))
    return {stage: common.summarize(values) for stage, values in merged.items()}


def stage_threads(blocks):
    """stage -> the thread that ran most of its calls (file mode: "display" draws, "inference" infers)."""
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
    cpu_shares = sorted(share for share in (_inference_cpu_share(block) for block in times_blocks)
                        if share is not None)
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
        "inference_cpu_share_median": common.percentile(cpu_shares, 50) if cpu_shares else None,
        "sched_autogroup": sched_autogroup(),
    }


def _inference_cpu_share(block):
    """The inference thread's share of the kiosk process's CPU time in one run (None if not measured)."""
    cpu = block["times"].cpu
    frames_cpu = (cpu.get("process") or 0.0) - cpu.get("loading", 0.0)  # loading is not a frame's work
    if frames_cpu <= 0 or cpu.get("inference") is None:
        return None
    return cpu["inference"] / frames_cpu


def sched_autogroup():
    """Whether Linux groups a session's threads into one scheduling entity (None when unknown): then an
    oversubscribed machine gives the kiosk process one share of CPU however many threads it runs."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return None


def classify_times(times, skip):
    """Seconds per classify (preprocess + inference + quality gate + postprocess), frame by frame."""
    parts = [steady(times.samples.get(stage, []), skip) for stage in CLASSIFY_STAGES]
    if not all(parts):
        return []
    return [sum(values) for values in zip(*parts)]


def thread_cpu(times, wall):
    """CPU seconds of the display and inference threads and the process, and each as a share of the
    wall time (of one core) and of the process's CPU: on a one-core run (taskset -c 0) the display
    thread's share is what the Nano's slow cores would have to spare."""
    cpu = dict(times.cpu)
    process = cpu.get("process") or None
    entry = {"wall_s": wall}
    for key in ("display", "prepare", "inference", "process"):
        seconds = cpu.get(key)
        entry[key + "_cpu_s"] = seconds
        entry[key + "_share_of_wall"] = None if seconds is None or not wall else seconds / wall
        if key != "process":
            entry[key + "_share_of_process"] = None if seconds is None or not process else seconds / process
    try:
        entry["cores_allowed"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        entry["cores_allowed"] = os.cpu_count()
    return entry


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
    # "Never older than one inference plus one frame", result by result: what each result's age holds
    # beyond its own work (preparing + inferring that frame: the kiosk records it beside the age) is
    # waiting and hand-over, and must fit in one camera frame.
    excess = [age - work for age, work in zip(ages, steady(getattr(kiosk, "result_work_s", []), skip))]
    frame_s = 1.0 / camera_fps
    age_summary = common.summarize(ages) if ages else {"n": 0}
    return {
        "camera_fps": camera_fps,
        "frames_displayed": kiosk.frames,
        "wall_s": wall,
        "display_fps": display_fps,
        # The display is paced (edge.kiosk.screen.DisplayPacer): at most this many frame-only screens a
        # second, plus one at once for each new result; camera frames past that are posted, not drawn.
        "display_cap_fps": _display_cap(kiosk),
        "frames_not_drawn": getattr(getattr(kiosk, "pacer", None), "skipped", None),
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
        "thread_cpu": thread_cpu(times, wall),
        "dropped_frames": getattr(getattr(kiosk, "worker", None), "dropped", None),
    }


def _display_cap(kiosk):
    """The kiosk's display pace in screens a second (None: unpaced, or a kiosk without a pacer)."""
    interval = getattr(getattr(kiosk, "pacer", None), "interval", None)
    return 1.0 / interval if interval else None


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
