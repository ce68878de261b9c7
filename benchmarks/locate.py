"""Cost of finding the X-ray in a 720p camera frame (``edge.locate``), the kiosk's per-frame stage.

Frames: the committed camera-frame samples (film on a lightbox, monitor), a digital X-ray, the same
X-ray letterboxed in a 16:9 frame, and a frame without an X-ray (the guide is used). Timed per kind:
``locate`` alone (what the live outline costs on every preview frame) and ``locate`` + the rectified
crop + ``normalise_crop`` (what ``edge.classify.prepare`` adds before the model). Budget: 3 ms per
720p frame for ``locate``. Writes JSON (default ``build/benchmarks/locate.json``); ``render_markdown``
gives its section for ``benchmarks/report.py``.
"""

import argparse
import functools
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NAME = "locate"
BUDGET_MS = 3.0
SAMPLES = os.path.join(common.ROOT, "samples", "chest")


def frames():
    """[(kind, 1280x720 BGR frame)] measured by this benchmark."""
    import cv2
    import numpy as np

    from edge.preprocess import load_image

    film = load_image(os.path.join(SAMPLES, "camera--film--pneumonia--00000398_002.jpg"))
    monitor = load_image(os.path.join(SAMPLES, "camera--monitor--effusion--00012123_001.jpg"))
    xray = cv2.resize(load_image(os.path.join(SAMPLES, "pneumonia--00000398_002.png")), (720, 720))
    letterboxed = np.zeros((720, 1280, 3), np.uint8)
    letterboxed[:, 280:1000] = xray
    rng = np.random.RandomState(0)
    scene = cv2.resize(rng.randint(0, 255, (9, 16, 3)).astype(np.uint8), (1280, 720),
                       interpolation=cv2.INTER_CUBIC)
    return [("film on a lightbox", film), ("monitor", monitor), ("digital X-ray 720x720", xray),
            ("letterboxed X-ray", letterboxed), ("no X-ray (guide)", scene)]


def _timed(func, runs, warmup):
    """Wall-clock statistics plus the process CPU time per call (all threads): on a shared, loaded
    machine the CPU time is the better estimate of the stage's own cost."""
    start = time.process_time()
    stats = common.summarize(common.time_calls(func, runs, warmup))
    stats["cpu_ms_per_call"] = (time.process_time() - start) * 1000.0 / (runs + warmup)
    return stats


def measure(runs, warmup):
    from edge.classify import analysed_image
    from edge.locate import locate

    rows = []
    for kind, frame in frames():
        rows.append({"frame": kind, "size": [int(frame.shape[1]), int(frame.shape[0])],
                     "method": locate(frame).method,
                     "locate": _timed(functools.partial(locate, frame), runs, warmup),
                     "locate_crop_normalise": _timed(lambda image=frame: analysed_image(locate(image)), runs,
                                                     warmup)})
    return rows


def render_markdown(result):
    lines = ["## X-ray localisation (`edge.locate`), per frame", "",
             "Budget {} ms per 720p frame for `locate`; {} runs after {} warm-up, {}, load {}.".format(
                 result["budget_ms"], result["runs"], result["warmup"], result["environment"]["cpu"],
                 result["environment"]["load_average"]), "",
             "| frame | method | locate: min / median ms, CPU ms per call "
             "| + crop + normalise: min / median ms, CPU ms |", "|---|---|---|---|"]
    for row in result["rows"]:
        cells = []
        for key in ("locate", "locate_crop_normalise"):
            stats = row[key]
            cells.append("{} / {}, {}".format(common.fmt(stats["min_ms"], 2),
                                              common.fmt(stats["median_ms"], 2),
                                              common.fmt(stats["cpu_ms_per_call"], 2)))
        lines.append("| {} | {} | {} | {} |".format(row["frame"], row["method"], cells[0], cells[1]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out-json", default=os.path.join(common.ROOT, "build", "benchmarks", "locate.json"))
    parser.add_argument("--quick", action="store_true", help="few runs: checks the script works")
    args = parser.parse_args(argv)
    runs, warmup = (5, 1) if args.quick else (args.runs, args.warmup)
    result = {"schema": common.SCHEMA, "benchmark": NAME, "budget_ms": BUDGET_MS, "runs": runs,
              "warmup": warmup, "environment": common.environment(),
              "command": common.command_line(NAME, argv or sys.argv[1:]),
              "rows": measure(runs, warmup)}
    common.write_json(args.out_json, result)
    print(render_markdown(result))
    print("wrote {}".format(args.out_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
