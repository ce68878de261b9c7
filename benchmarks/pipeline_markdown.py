"""benchmarks/pipeline.py, part 3: the markdown section of docs/benchmarks.md."""

from benchmarks import common
from benchmarks.pipeline_summary import STAGES

THREAD_LABELS = {"MainThread": "display thread (MainThread)", "inference": "inference thread"}


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
    lines = []
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
    return lines


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
    lines.append("")
    return lines


def _live_table(result, live):
    lines = []
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
            "| ceiling: min(raw inference/s just before and after this run, camera fps) | {} |".format(
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
        lines += _thread_cpu_rows(live)
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
    return lines


def _share(value):
    return "n/a" if value is None else "{:.0%}".format(value)


def _thread_cpu_rows(live):
    cpu = live.get("thread_cpu")
    if not cpu:
        return []
    return [
        "| CPU on {} core{}: display thread / inference thread / whole process, share of the wall time "
        "| {} / {} / {} |".format(cpu["cores_allowed"], "" if cpu["cores_allowed"] == 1 else "s",
                                 _share(cpu["display_share_of_wall"]), _share(cpu["inference_share_of_wall"]),
                                 _share(cpu["process_share_of_wall"])),
        "| display thread's share of the process's CPU | {} |".format(
            _share(cpu["display_share_of_process"])),
        "| stale frames replaced before inference took them | {} |".format(
            "n/a" if live.get("dropped_frames") is None else live["dropped_frames"]),
    ]


def _py_spy_table(spy):
    lines = []
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
    return lines


def _profile_table(profile):
    lines = []
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
    return lines


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
