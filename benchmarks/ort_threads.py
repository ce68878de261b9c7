"""ONNX Runtime CPU session settings: intra-op threads and spinning, side by side on one bundle.

Every setting gets its own session of the same model in one process; the sessions run in
interleaved rounds (each round runs every session, order rotating), so machine drift hits them
alike. After each inference the quality gate (``edge.quality.assess_quality``) runs on a frame, as
in the kiosk, to show what busy-waiting pool threads do to the Python code that follows a run.
"""

import argparse
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NAME = "ort-threads"
DEFAULT_BUNDLE = os.path.join(common.ROOT, "models", "chest")
DEFAULT_SETTINGS = "default:on,default:off,1:on,2:off"


def parse_settings(text):
    """'default:on,1:off' -> [(label, threads or None, spinning bool)]."""
    settings = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        threads, _sep, spin = item.partition(":")
        count = None if threads in ("", "default") else int(threads)
        spinning = spin.strip().lower() not in ("off", "0", "no")
        label = "{} threads, spinning {}".format(count or "default", "on" if spinning else "off")
        settings.append((label, count, spinning))
    return settings


def make_session(model_path, threads, spinning):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


def measure(args):
    import numpy as np

    from edge.bundle import load_bundle
    from edge.preprocess import preprocess
    from edge.quality import assess_quality

    bundle = load_bundle(args.bundle)
    frame = np.random.RandomState(0).randint(0, 256, size=(480, 640, 3)).astype(np.uint8)
    samples = [sample.path for sample in bundle.golden_samples()]
    if samples:
        from edge.preprocess import load_image

        image = load_image(samples[0])
        frame[:] = 0
        height, width = image.shape[:2]
        scale = min(640.0 / width, 480.0 / height)
        import cv2

        resized = cv2.resize(image, (max(1, int(width * scale)), max(1, int(height * scale))))
        frame[: resized.shape[0], : resized.shape[1]] = resized
    batch = preprocess(frame, bundle.description.input)
    settings = parse_settings(args.settings)
    sessions = [make_session(bundle.model_path, threads, spinning) for _label, threads, spinning in settings]
    feeds = {bundle.description.input.name: batch}
    for session in sessions:
        for _ in range(args.warmup):
            session.run(None, feeds)
    infer = [[] for _ in sessions]
    after = [[] for _ in sessions]
    for round_index in range(args.rounds):
        order = list(range(len(sessions)))
        shift = round_index % len(order)
        for index in order[shift:] + order[:shift]:
            for _ in range(args.runs):
                start = time.perf_counter()
                sessions[index].run(None, feeds)
                middle = time.perf_counter()
                assess_quality(frame)
                infer[index].append(middle - start)
                after[index].append(time.perf_counter() - middle)
    rows = []
    for (label, threads, spinning), inf, aft in zip(settings, infer, after):
        rows.append(
            {
                "setting": label,
                "threads": threads,
                "spinning": spinning,
                "inference": common.summarize(inf),
                "quality_after": common.summarize(aft),
            }
        )
    base = rows[0]["inference"]["median_ms"]
    for row in rows:
        row["speedup_vs_first"] = base / row["inference"]["median_ms"]
    return bundle, rows


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/ort_threads.py", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help="model bundle (default: %(default)s)")
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help="THREADS:SPINNING,... (THREADS a number or 'default'; SPINNING on/off); the first "
        "is the reference (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default: %(default)s)")
    parser.add_argument(
        "--runs", type=int, default=20, help="runs per session per round (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=5)
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.runs, args.warmup = min(args.rounds, 2), min(args.runs, 3), min(args.warmup, 1)
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = common.environment()
    bundle, rows = measure(args)
    result = {
        "title": "ONNX Runtime CPU threads and spinning, {}".format(bundle.bundle_id),
        "command": common.command_line("ort_threads", argv),
        "environment": env,
        "backend": "onnxruntime",
        "precision": "fp32",
        "bundle": common.display_path(args.bundle),
        "rounds": args.rounds,
        "runs": args.runs,
        "quick": args.quick,
        "rows": rows,
    }
    common.finish(result, args, NAME, tag=bundle.module_id)
    return 0


def render_markdown(result):
    env = result["environment"]
    lines = ["## {}".format(result["title"]), ""]
    lines.append(
        "Measured {} on {} ({} CPUs; load average {}), onnxruntime {}; bundle `{}`; one session per setting "
        "in one process, {} interleaved rounds of {} runs each; after every run the kiosk's quality gate "
        "runs on a 640x480 frame{}.".format(
            env["date"],
            env.get("jetson") or env.get("cpu") or env["machine"],
            env["cpu_count"],
            env["load_average"],
            env["onnxruntime"],
            result["bundle"],
            result["rounds"],
            result["runs"],
            " (**--quick: not a measurement**)" if result.get("quick") else "",
        )
    )
    lines.append("")
    lines.append("Command: `{}`".format(result["command"]))
    lines.append("")
    header = ("setting", "inference median (ms)", "IQR (ms)", "p90 (ms)", "x vs first row",
              "quality gate right after, median / p90 (ms)")
    rows = []
    for row in result["rows"]:
        inf, aft = row["inference"], row["quality_after"]
        rows.append((row["setting"], "{:.2f}".format(inf["median_ms"]), "{:.2f}".format(inf["iqr_ms"]),
                     "{:.2f}".format(inf["p90_ms"]), "{:.2f}x".format(row["speedup_vs_first"]),
                     "{:.2f} / {:.2f}".format(aft["median_ms"], aft["p90_ms"])))
    lines += common.table(header, rows)
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
