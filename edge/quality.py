"""Image-quality gate: blurry, too dark, overexposed. Cheap enough to run on every frame.

The image is first reduced to a grey image whose longest side is ``WORK_SIZE`` pixels, so the
blur measure (variance of the Laplacian) means the same thing for a 640x480 webcam and a
1920x1080 CSI frame, and the cost does not grow with the camera resolution.

Exposure: ``mean`` grey level below ``dark_threshold`` is "too dark", above ``bright_threshold``
"overexposed"; independently, more than ``clip_fraction`` of the pixels crushed to black
(<= 5) or blown to white (>= 250) is also "too dark"/"overexposed".
"""

from edge.errors import ConfigError
from edge.i18n import N_, _
from edge.lazy import require

WORK_SIZE = 256
BLACK_LEVEL = 5
WHITE_LEVEL = 250
# problem -> what the worker does about it (both shown on the screen, in the worker's language)
QUALITY_PROBLEMS = (N_("blurry"), N_("too dark"), N_("overexposed"))
QUALITY_ADVICE = {"blurry": N_("hold the camera still and focus"), "too dark": N_("add light"),
                  "overexposed": N_("reduce glare or light")}


class QualityThresholds(object):
    """The [quality] section of the config."""

    FIELDS = ("blur_threshold", "dark_threshold", "bright_threshold", "clip_fraction")

    def __init__(self, blur_threshold=60.0, dark_threshold=40.0, bright_threshold=220.0, clip_fraction=0.35):
        self.blur_threshold = float(blur_threshold)
        self.dark_threshold = float(dark_threshold)
        self.bright_threshold = float(bright_threshold)
        self.clip_fraction = float(clip_fraction)
        if not 0 <= self.dark_threshold < self.bright_threshold <= 255:
            raise ConfigError("[quality] needs 0 <= dark_threshold < bright_threshold <= 255, got {} and {}"
                              .format(self.dark_threshold, self.bright_threshold))
        if self.blur_threshold < 0:
            raise ConfigError("[quality] blur_threshold must be >= 0, got {}".format(self.blur_threshold))
        if not 0 < self.clip_fraction <= 1:
            raise ConfigError("[quality] clip_fraction must be in (0, 1], got {}".format(self.clip_fraction))

    @classmethod
    def from_mapping(cls, section):
        """Build from a dict or configparser section; unknown keys are an error, missing keys default."""
        values = {}
        for key in section or {}:
            if key not in cls.FIELDS:
                raise ConfigError("[quality] has unknown key {!r}; known: {}".format(
                    key, ", ".join(cls.FIELDS)))
            try:
                values[key] = float(section[key])
            except ValueError:
                raise ConfigError("[quality] {} must be a number, got {!r}".format(
                    key, section[key])) from None
        return cls(**values)

    def to_dict(self):
        return {key: getattr(self, key) for key in self.FIELDS}

    def for_bundle(self, bundle):
        """These thresholds, with the blur threshold lowered to the bundle's calibrated one, if any.

        Sharpness depends on the kind of image: digital X-rays are smooth, and a fixed threshold
        that suits camera photos calls 1 in 20 real X-rays "blurry". The export measures the
        validation images (``calibrate_blur_threshold``) and stores the result in the manifest.
        """
        calibrated = (bundle.manifest.get("quality") or {}).get("blur_threshold")
        if calibrated is None or calibrated >= self.blur_threshold:
            return self
        values = self.to_dict()
        values["blur_threshold"] = float(calibrated)
        return QualityThresholds(**values)


class Quality(object):
    """Result of the gate: ``ok``, ``problems`` [(name, value)], a ``message`` for the screen, measures."""

    def __init__(self, problems, sharpness, brightness, dark_fraction, bright_fraction):
        self.problems = list(problems)
        self.sharpness = sharpness
        self.brightness = brightness
        self.dark_fraction = dark_fraction
        self.bright_fraction = bright_fraction

    @property
    def ok(self):
        return not self.problems

    @property
    def message(self):
        if self.ok:
            return ""
        names = [name for name, _value in self.problems]
        return _("Image quality: {} - {}").format(", ".join(_(n) for n in names),
                                                  "; ".join(_(QUALITY_ADVICE[n]) for n in names))

    def to_dict(self):
        return {"ok": self.ok, "problems": [[name, round(value, 3)] for name, value in self.problems],
                "message": self.message, "sharpness": round(self.sharpness, 2),
                "brightness": round(self.brightness, 2)}

    def __repr__(self):
        return "Quality(ok={}, problems={!r})".format(self.ok, self.problems)


def _small_grey(image_bgr):
    # Grey first, then shrink: a third of the cost of shrinking three colour channels.
    cv2 = require("cv2")
    if image_bgr.ndim == 3:
        if image_bgr.shape[2] == 4:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2GRAY)
        elif image_bgr.shape[2] == 1:
            image_bgr = image_bgr[:, :, 0]
        else:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    height, width = image_bgr.shape[:2]
    scale = float(WORK_SIZE) / max(height, width)
    if scale < 1.0:
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    return image_bgr


def sharpness(image_bgr):
    """The blur measure: variance of the Laplacian of the reduced grey image."""
    return float(require("cv2").Laplacian(_small_grey(image_bgr), require("cv2").CV_64F).var())


# The blur threshold stored in a bundle: half the sharpness of the least sharp 1% of its
# validation images. Gaussian or motion blur of a few pixels drops the measure 5-20 fold.
BLUR_PERCENTILE = 1.0
BLUR_MARGIN = 0.5


def calibrate_blur_threshold(images_bgr):
    """{"blur_threshold", "sharpness_percentile_1", "images"} from in-scope images, for the manifest."""
    values = sorted(sharpness(image) for image in images_bgr)
    if not values:
        return None
    index = int(round((len(values) - 1) * BLUR_PERCENTILE / 100.0))
    low = values[index]
    return {"blur_threshold": round(low * BLUR_MARGIN, 3), "sharpness_percentile_1": round(low, 3),
            "images": len(values), "method": "half the 1st percentile of validation-image sharpness"}


def assess_quality(image_bgr, thresholds=None):
    """Measure blur and exposure of a BGR (or grey) uint8 image; return a Quality."""
    cv2 = require("cv2")
    thresholds = thresholds or QualityThresholds()
    grey = _small_grey(image_bgr)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    brightness = float(grey.mean())
    total = float(grey.size)
    dark_fraction = float((grey <= BLACK_LEVEL).sum()) / total
    bright_fraction = float((grey >= WHITE_LEVEL).sum()) / total
    problems = []
    if brightness < thresholds.dark_threshold or dark_fraction > thresholds.clip_fraction:
        problems.append(("too dark", brightness))
    elif brightness > thresholds.bright_threshold or bright_fraction > thresholds.clip_fraction:
        problems.append(("overexposed", brightness))
    # A dark or blown-out image has no texture; calling it blurry as well would be noise.
    if not problems and sharpness < thresholds.blur_threshold:
        problems.append(("blurry", sharpness))
    return Quality(problems, sharpness, brightness, dark_fraction, bright_fraction)
