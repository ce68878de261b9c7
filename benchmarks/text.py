"""Text rendering cost per frame: FreeType (Pillow, the worker's language) against OpenCV's Hershey.

The screen is ``edge.overlay`` drawing a real chest X-ray's result (the shipped chest bundle on an
image from ../shared/data) as the kiosk does on a live camera: the outline guide text, the FROZEN
badge and a technician line whose fps changes every frame (a new string each frame). Per engine
and language, the median milliseconds per frame of:

* ``cold``: ``draw_overlay`` with the glyph and width caches emptied before every frame (every line
  shaped and rasterised);
* ``panel``: ``draw_overlay`` (the whole panel every frame; lines from the glyph cache);
* ``kiosk``: ``OverlayRenderer.draw`` as the kiosk calls it (the panel only when it changed).

and each as a ratio to Hershey in the same mode; the engines take turns in rounds so that a busy
machine slows them alike. ``python -m benchmarks.text [--frames N] [--size WxH]``.
"""

import argparse
import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "..", "shared", "data", "chest-nih", "images", "00001697_011.png")
MODES = ("cold", "panel", "kiosk")
ENGINES = (("hershey", "en"), ("freetype", "en"), ("freetype", "hi"), ("freetype", "bn"))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per engine and mode")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the engines take turns in")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--image", default=IMAGE)
    return parser.parse_args(argv)


def classify(path):
    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from edge.preprocess import read_image
    from edge.quality import QualityThresholds

    bundle = load_bundle(os.path.join(ROOT, "models", "chest"))
    runner = open_runner(bundle, backend="onnxruntime", precision="fp32")
    with Classifier(runner, quality_thresholds=QualityThresholds()) as classifier:
        image = read_image(path).image
        return bundle, image, classifier.classify(image)


def _states(bundle, size, frames):
    from edge.overlay import OverlayState

    height, width = size[1], size[0]
    outline = [[width * 0.2, height * 0.1], [width * 0.5, height * 0.1], [width * 0.5, height * 0.9],
               [width * 0.2, height * 0.9]]
    return [OverlayState(module_title=bundle.title, size=size, frozen=False, outline=outline,
                         outline_state="searching", backend="onnxruntime", fps=20.0 + (i % 97) / 10.0,
                         latency_ms=40 + i % 13) for i in range(frames)]


def _time(draw, frames):
    times = []
    for index in range(frames):
        start = time.perf_counter()
        draw(index)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class Screen(object):
    """One engine drawing the same result: its states, canvas, renderer, kept across rounds."""

    def __init__(self, engine_name, language, bundle, image, result, size, frames):
        from edge import text
        from edge.overlay import OverlayRenderer

        self.language = language
        self.engine = text.HersheyText() if engine_name == "hershey" else text.engine_for(language)
        self.image, self.result = image, result
        self.states = _states(bundle, size, frames)
        self.canvas = None
        self.renderer = OverlayRenderer()

    def round(self, frames):
        """{mode: [ms per frame]} for ``frames`` frames of each mode."""
        from edge import text
        from edge.overlay import draw_overlay

        text.set_engine(self.engine, self.language)
        self.canvas = draw_overlay(self.image, self.result, self.states[0], self.canvas)
        cache = getattr(self.engine, "cache", None)

        def cold(index):
            if cache is not None:
                cache.items.clear()
                self.engine.widths.items.clear()
            draw_overlay(self.image, self.result, self.states[index], self.canvas)

        def panel(index):
            draw_overlay(self.image, self.result, self.states[index], self.canvas)

        def kiosk(index):
            self.renderer.draw(self.image, self.result, self.states[index])

        return {"cold": _time(cold, frames), "panel": _time(panel, frames), "kiosk": _time(kiosk, frames)}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from edge.text import start

    size = tuple(int(v) for v in args.size.split("x"))
    bundle, image, result = classify(args.image)
    screens = [Screen(name, language, bundle, image, result, size, args.frames) for name, language in ENGINES]
    samples = [{mode: [] for mode in MODES} for _screen in screens]
    per_round = max(1, args.frames // args.rounds)
    for _round in range(args.rounds):  # engines interleaved: a busy machine slows them alike
        for screen, sample in zip(screens, samples):
            for mode, times in screen.round(per_round).items():
                sample[mode].extend(times[1:])
    start("en")
    rows = [(name, language, {mode: statistics.median(sample[mode]) for mode in MODES})
            for (name, language), sample in zip(ENGINES, samples)]
    base = rows[0][2]
    print("| engine | language | cold ms | x Hershey | panel ms | x Hershey | kiosk ms | x Hershey |")
    print("|---|---|---|---|---|---|---|---|")
    for name, language, times in rows:
        cells = ["{:.2f} | {:.2f}".format(times[mode], times[mode] / base[mode]) for mode in MODES]
        print("| {} | {} | {} |".format(name, language, " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
