"""benchmarks/pipeline.py, part 3: the markdown section of docs/benchmarks.md."""

from benchmarks import common
from benchmarks.pipeline_summary import STAGES

THREAD_LABELS = {"display": "display thread", "inference": "inference thread"}


def _verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def _header(result):
    env = result["environment"]
    settings = result["settings"]
    title = result["title"]
    if settings.get("ort_spinning", "default") != "default":
        title += " - experiment: ONNX Runtime spinning {}".format(settings["ort_spinning"])
    if result.get("live_mode") and settings.get("camera_fps") != 30.0:
        title += " - stress: camera emulated at {:g} fps".format(settings["camera_fps"])
    cores = ((result.get("live_mode") or {}).get("thread_cpu") or {}).get("cores_allowed")
    if cores is not None and cores < env["cpu_count"]:
        title += " - {} of {} cores (taskset)".format(cores, env["cpu_count"])
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
    return lines


def _file_table(fm):
    lines = [
        "### File mode (video file or USB images: every frame drawn with its own result, depth-1 pipeline)",
        "",
        "The display thread (`display`) decodes and prepares frame N+1 and hands it to the `inference` "
        "thread before drawing frame N. Each stage is listed under the thread that ran it; a thread's "
        "busy time per frame shown must fit in the frame time, and the busier thread sets the pace.",
        "",
    ]
    rows = []
    means = fm.get("stage_mean_ms") or {}
    stage_threads = fm.get("stage_threads") or {}
    for key, label in STAGES:
        stage = fm["stages"].get(key)
        if not stage or not stage.get("n"):
            continue
        rows.append((label, stage_threads.get(key, "?"), "{:.2f}".format(stage["median_ms"]),
                     "{:.2f}".format(stage["iqr_ms"]), "{:.2f}".format(stage["p90_ms"]),
                     common.fmt(means.get(key), 2)))
    frame = fm["frame"]
    mean_frame = fm.get("mean_frame_ms")
    for name, busy in sorted((fm.get("thread_busy_mean_ms") or {}).items()):
        share = "n/a" if not mean_frame else "{:.0%} of the frame".format(busy / mean_frame)
        rows.append(("*{} busy*".format(THREAD_LABELS.get(name, name + " thread")), "", "", "", "",
                     "{:.2f} ({})".format(busy, share)))
    rows.append(("**whole frame (sink to sink)**", "", "**{:.2f}**".format(frame["median_ms"]),
                 "{:.2f}".format(frame["iqr_ms"]), "{:.2f}".format(frame["p90_ms"]),
                 common.fmt(mean_frame, 2)))
    header = ("stage", "thread", "median (ms)", "IQR (ms)", "p90 (ms)", "mean per frame shown (ms)")
    return lines + common.table(header, rows) + [""]


def _file_bullets(result, fm, threads):
    lines = []
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
    share = fm.get("inference_cpu_share_median")
    if share is not None:
        lines.append(
            "- Inference's share of the kiosk process's CPU time: median {:.0%} per run (the rest: decode, "
            "prepare, overlay). When the machine is oversubscribed, Linux gives one process about one share "
            "of CPU however many threads it runs (sched_autogroup {}), so under load end-to-end / raw tends "
            "to this share; on a quiet machine each thread has a core of its own.".format(
                share, {True: "on here", False: "off here"}.get(fm.get("sched_autogroup"), "unknown")))
    lines.append("")
    return lines


def _live_table(result, live):
    if not live:
        return []
    lines = [
        "### Live mode (camera emulated at {:g} fps; capture, inference and display decoupled)".format(
            live["camera_fps"]),
        "",
    ]
    age, beyond = live["result_age"], live["age_beyond_inference"]
    busy = live.get("worker_busy_fraction")
    blocks = live.get("ratio_blocks") or [live["ratio"]]
    rows = [
        (_displayed_label(live), common.fmt(live["display_fps"], 1)),
        ("results/s (inferences completed)", common.fmt(live["results_fps"], 1)),
        ("ceiling: min(raw inferences/s just before and after this run, back to back: their count / "
         "their total time, as in file mode; camera fps)", common.fmt(live["results_ceiling_fps"], 1)),
        ("results/s / ceiling (goal >= {:.2f}); the median of {} runs (each run's ratio)".format(
            result["goals"]["ratio_goal"], len(blocks)),
         "**{}** ({}; {})".format(common.fmt(live["ratio"], 2), _verdict(result["goals"]["live_ratio_ok"]),
                                  ", ".join(common.fmt(ratio, 2) for ratio in blocks))),
        ("the same runs against 1 / raw's median instead (sessions 4-6; a rate no back-to-back loop "
         "reaches when raw inference has a tail)",
         ", ".join(common.fmt(ratio, 2) for ratio in live.get("ratio_vs_raw_median_blocks") or [])),
        ("inference in the loop, median / p90 (ms)", _pair(live["inference"], "median_ms", "p90_ms", 2)),
        ("classify in the loop (preprocess + inference + quality + postprocess), median / max (ms)",
         _pair(live["classify"], "median_ms", "max_ms", 2)),
        ("locate the X-ray (edge.locate, on the prepare thread, once per classified frame; the newest "
         "is the outline on screen), median / p90 (ms); calls",
         "{}; {}".format(_pair(live["stages"].get("locate", {}), "median_ms", "p90_ms", 2),
                         live["stages"].get("locate", {}).get("n", 0))),
        ("displayed frame interval, median / p90 (ms)",
         _pair(live["display_frame"], "median_ms", "p90_ms", 1)),
        ("inference thread: busy fraction; idle between classifies, median / p90 (ms)",
         "{}; {}".format("n/a" if busy is None else "{:.0%}".format(busy),
                         _pair(live["worker_idle"], "median_ms", "p90_ms", 1))),
        ("result age when first shown, median / p90 / max (ms)",
         " / ".join(common.fmt(age.get(key), 1) for key in ("median_ms", "p90_ms", "max_ms"))),
    ]
    rows += _thread_cpu_rows(live)
    spread = " / ".join(common.fmt(beyond.get(key), 1) for key in ("median_ms", "p90_ms", "max_ms"))
    rows.append(("age minus that result's own classify time, median / p90 / max (ms); goal <= one camera "
                 "frame ({})".format(common.fmt(live["age_bound_ms"], 1)),
                 "{} (**{}**)".format(spread, _verdict(live["age_ok"]))))
    return lines + common.table(("measure", "value"), rows) + [""]


def _displayed_label(live):
    """What displayed frames/s is capped to: the display's pace, plus a screen for each new result."""
    cap = live.get("display_cap_fps")
    if not cap:
        return "displayed frames/s"
    return ("displayed frames/s (the display is paced: at most {:g} screens/s plus one at once for each new "
            "result; camera frames posted but not drawn: {})".format(cap, live.get("frames_not_drawn")))


def _pair(summary, first, second, digits):
    return "{} / {}".format(common.fmt(summary.get(first), digits), common.fmt(summary.get(second), digits))


def _share(value):
    return "n/a" if value is None else "{:.0%}".format(value)


def _thread_cpu_rows(live):
    cpu = live.get("thread_cpu")
    if not cpu:
        return []
    names = ["display thread", "inference thread", "whole process"]
    keys = ["display", "inference", "process"]
    if cpu.get("prepare_cpu_s") is not None:  # the worker's prepare thread (live frames, just in time)
        names.insert(1, "prepare thread")
        keys.insert(1, "prepare")
    return [
        ("CPU on {} core{}: {}, share of the wall time".format(
            cpu["cores_allowed"], "" if cpu["cores_allowed"] == 1 else "s", " / ".join(names)),
         " / ".join(_share(cpu[key + "_share_of_wall"]) for key in keys)),
        ("display thread's share of the process's CPU", _share(cpu["display_share_of_process"])),
        ("stale frames replaced before inference took them",
         "n/a" if live.get("dropped_frames") is None else live["dropped_frames"]),
    ]


def _py_spy_table(spy):
    if not spy:
        return []
    rows = [(thread["thread"], "{:.1f}".format(thread["seconds"]),
             ", ".join("`{}` {:.0%}".format(t["function"], t["share_of_thread"]) for t in thread["top"][:6]))
            for thread in spy["threads"]]
    title = "### Live mode, every thread (py-spy at {} Hz in a separate run; active samples)".format(
        spy["rate_hz"])
    header = ("thread", "active samples (s)", "where its active time goes")
    return [title, ""] + common.table(header, rows) + [""]


def _profile_table(profile):
    if not profile:
        return []
    rows = [("`{}`".format(row["function"]), row["calls"], "{:.3f}".format(row["own_s"]),
             "{:.1%}".format(row["own_share"]), "{:.1%}".format(row["cumulative_share"]))
            for row in profile["top"]]
    return (["### Where the time goes (cProfile, one file-mode run, own time)", ""]
            + common.table(("function", "calls", "own (s)", "share", "cumulative share"), rows) + [""])


def render_markdown(result):
    fm = result["file_mode"]
    threads = result["runner"].get("cpu_threads")
    lines = _header(result) + _file_table(fm) + _file_bullets(result, fm, threads)
    live = result.get("live_mode")
    if live:
        lines += _live_table(result, live)
    spy = (live or {}).get("py_spy")
    if spy:
        lines += _py_spy_table(spy)
    if result.get("profile"):
        lines += _profile_table(result["profile"])
    return "\n".join(lines) + "\n"
