"""Issue 13, second contrast trial for the child module: the candidates of ``recipes.contrast_trial`` (the
combined ``equalize-clahe`` among them) judged on the two proxies it already scores (``exposure``,
``processing``) and on a THIRD family that none of the candidates was designed against (``vendor``),
pre-registered in ``docs/models/pediatric-pneumonia/contrast-trial-2.md``.

``vendor``: another manufacturer's rendering chain, as a CR/DR unit applies it to the raw detector image:
multi-frequency processing (the large-scale grey levels compressed, fine detail enhanced at a radius that
survives the resize to the model's input) and an S-shaped characteristic curve (a sigmoid, not a power law)
about the image's median. Deterministic by index (two settings alternate, as ``exposure``'s gammas do).

``python -m recipes.contrast_trial_child [--modes none,equalize,clahe,equalize-clahe] [--proxy-every 3]
[--json OUT]`` prints one line (the JSON summary).
"""

import contextlib
import sys

import numpy as np

from edge.cliutil import run_guarded
from recipes import contrast_trial
from recipes.shift_proxy import at_least_one, print_summary

# (range compression, S-curve gain) alternate by index; the radii are fractions of the image's short side.
VENDOR_SETTINGS = ((0.5, 6.0), (0.7, 10.0))
VENDOR_LOW_RADIUS = 1.0 / 12    # the low-frequency band compressed (sigma: a twelfth of the short side)
VENDOR_FINE_RADIUS = 1.0 / 150  # the detail band enhanced (about 1.5 px at 224)
VENDOR_FINE_AMOUNT = 0.6
DEFAULT_MODES = ("none", "equalize", "clahe", "equalize-clahe")


def vendor(image, index):
    """``image`` (uint8, BGR or grey) as another unit renders it: range compression + detail enhancement,
    then a sigmoid characteristic curve about the median, back to 0-255; grey as BGR."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    compress, gain = VENDOR_SETTINGS[index % len(VENDOR_SETTINGS)]
    side = min(grey.shape[:2])
    values = grey.astype(np.float32) / np.float32(255.0)
    low = cv2.GaussianBlur(values, (0, 0), max(1.0, side * VENDOR_LOW_RADIUS))
    values = values - np.float32(compress) * (low - np.float32(low.mean()))
    fine = cv2.GaussianBlur(values, (0, 0), max(0.5, side * VENDOR_FINE_RADIUS))
    values = values + np.float32(VENDOR_FINE_AMOUNT) * (values - fine)
    curve = 1.0 / (1.0 + np.exp(-gain * (values.astype(np.float64) - float(np.median(values)))))
    ends = 1.0 / (1.0 + np.exp(-gain * (np.array([values.min(), values.max()], dtype=np.float64)
                                        - float(np.median(values)))))
    out = 255.0 * (curve - ends[0]) / max(1e-6, ends[1] - ends[0])
    return cv2.cvtColor(np.clip(np.round(out), 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


THIRD = {"vendor": vendor}


@contextlib.contextmanager
def with_proxies(extra):
    """``recipes.contrast_trial.PROXIES`` extended by ``extra`` for the block (and restored after it), so
    the shared trial scores the extra families on the same files, folds and fold models."""
    before = dict(contrast_trial.PROXIES)
    clash = set(extra) & set(before)
    if clash:
        from edge.errors import ConfigError

        raise ConfigError("proxy name(s) {} already in recipes.contrast_trial.PROXIES. Fix: rename the "
                          "extra family".format(sorted(clash)))
    contrast_trial.PROXIES.update(extra)
    try:
        yield contrast_trial.PROXIES
    finally:
        contrast_trial.PROXIES.clear()
        contrast_trial.PROXIES.update(before)


def measure(modes, proxy_every=3, threads=1):
    """``recipes.contrast_trial.measure`` with the third family added; its name recorded in the result."""
    with with_proxies(THIRD) as proxies:
        result = contrast_trial.measure(modes, proxy_every, threads)
        result["proxies"] = list(proxies)
    result["vendor_family"] = "range compression x{} (sigma 1/12 side), detail x{} (sigma 1/150 side), " \
        "sigmoid gain {} about the median".format([s[0] for s in VENDOR_SETTINGS], VENDOR_FINE_AMOUNT,
                                                   [s[1] for s in VENDOR_SETTINGS])
    return result


def main(argv=None):
    """Run the comparison; prints one line (the JSON summary) or the error."""
    parser = contrast_trial.trial_parser("python -m recipes.contrast_trial_child", __doc__.split("\n")[0],
                                         DEFAULT_MODES)
    args = parser.parse_args(argv)
    return run_guarded(lambda: print_summary(measure(
        contrast_trial.checked_modes(args.modes), at_least_one("--proxy-every", args.proxy_every),
        at_least_one("--threads", args.threads)), args.json))


if __name__ == "__main__":
    sys.exit(main())
