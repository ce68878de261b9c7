"""Render real X-rays as a 1280x720 camera sees them, with the ground-truth quadrilateral.

Two scenes: ``film`` (a film on a bright, uneven lightbox: the film transmits a fraction of the
light behind it) and ``monitor`` (the X-ray on a screen inside a dark bezel, with moire). Each
frame: the X-ray fills 55-85% of the frame height, tilted up to 6 degrees with perspective, a glare
spot, a colour cast, an illumination gradient, defocus, sensor noise and JPEG quality 60-90.

Deterministic: frame ``index`` of a run with ``seed`` uses its own ``RandomState(seed, index)``,
so the same seed writes the same bytes, and one frame does not depend on the others.
``photograph(image, rng, scene)`` is the pure part; ``photograph_split`` writes frames + JSON.
"""

import json
import math
import os

import cv2
import numpy as np

from edge.errors import ConfigError, ImageError

FRAME_SIZE = (1280, 720)
SCENES = ("film", "monitor")
HEIGHT_RANGE = (0.55, 0.85)
MAX_TILT_DEG = 6.0
MAX_KEYSTONE = 0.04
EDGE_MARGIN = 0.04
JPEG_RANGE = (60, 90)
FORMAT = "medkiosk-photographed"


class Photo(object):
    """One rendered frame: ``frame`` (BGR uint8, already JPEG-degraded), ``jpeg`` bytes, ``quad``
    (4x2 corners TL, TR, BR, BL of the X-ray in frame pixels) and the drawn ``params``."""

    def __init__(self, frame, jpeg, quad, params):
        self.frame = frame
        self.jpeg = jpeg
        self.quad = quad
        self.params = params


def _rng(seed, index):
    return np.random.RandomState([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])


def _grey(image):
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def random_quad(rng, image_size, frame_size=FRAME_SIZE):
    """Corners of the X-ray in the frame: size, tilt, keystone and position drawn from ``rng``."""
    width, height = frame_size
    img_w, img_h = image_size
    quad_h = rng.uniform(*HEIGHT_RANGE) * height
    quad_w = quad_h * img_w / float(img_h)
    angle = math.radians(rng.uniform(-MAX_TILT_DEG, MAX_TILT_DEG))
    half = np.array([[-quad_w, -quad_h], [quad_w, -quad_h], [quad_w, quad_h], [-quad_w, quad_h]]) / 2.0
    # Keystone: one side shorter than the other (the camera is not square to the film).
    kx, ky = rng.uniform(-MAX_KEYSTONE, MAX_KEYSTONE, size=2)
    half[:, 0] *= 1.0 + kx * np.sign(half[:, 1])
    half[:, 1] *= 1.0 + ky * np.sign(half[:, 0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = half.dot(rotation.T)
    span = corners.max(axis=0) - corners.min(axis=0)
    # At least 4% of the frame height stays around the X-ray: the camera sees what surrounds it.
    edge = EDGE_MARGIN * height
    margin_x = max(0.0, (width - span[0]) / 2.0 - edge)
    margin_y = max(0.0, (height - span[1]) / 2.0 - edge)
    centre = np.array([width / 2.0 + rng.uniform(-margin_x, margin_x),
                       height / 2.0 + rng.uniform(-margin_y, margin_y)])
    return (corners + centre).astype(np.float32), math.degrees(angle)


def _gradient(rng, frame_size, low):
    """A multiplicative light gradient from ``low`` to 1 across a random direction, plus vignetting."""
    width, height = frame_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xs - width / 2.0) * math.cos(theta) + (ys - height / 2.0) * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(1.0, float(ramp.max() - ramp.min()))
    corner = float((width / 2.0) ** 2 + (height / 2.0) ** 2)
    radius = ((xs - width / 2.0) ** 2 + (ys - height / 2.0) ** 2) / corner
    return (low + (1.0 - low) * ramp) * (1.0 - rng.uniform(0.0, 0.15) * radius)


def _moire(rng, frame_size):
    width, height = frame_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 9.0)
    phase = (xs * math.cos(theta) + ys * math.sin(theta)) * 2 * math.pi / period
    return 1.0 + rng.uniform(0.02, 0.05) * np.sin(phase)


def _scene_film(rng, xray_in_frame, mask, frame_size):
    """Lightbox light times the film's transmission (bright X-ray parts let most light through)."""
    light = rng.uniform(215, 250) * _gradient(rng, frame_size, rng.uniform(0.8, 0.95))
    low, high = rng.uniform(0.05, 0.15), rng.uniform(0.72, 0.85)
    transmission = low + (high - low) * xray_in_frame / 255.0
    return light * (1.0 - mask + mask * transmission), {"light_high": round(high, 3)}


def _scene_monitor(rng, xray_in_frame, mask, frame_size):
    """A dark bezel around a screen showing the X-ray between its black and white levels."""
    bezel = rng.uniform(6, 22)
    black, white = rng.uniform(32, 50), rng.uniform(200, 240)
    screen = (black + (white - black) * xray_in_frame / 255.0) * _moire(rng, frame_size)
    screen *= _gradient(rng, frame_size, rng.uniform(0.85, 0.97))
    return bezel * (1.0 - mask) + screen * mask, {"black": round(black, 1), "bezel": round(bezel, 1)}


SCENE_RENDERERS = {"film": _scene_film, "monitor": _scene_monitor}


def _glare(rng, quad, frame_size):
    width, height = frame_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    weights = rng.dirichlet([1.0] * 4)
    centre = weights.dot(quad)
    sigma = rng.uniform(18, 70)
    strength = rng.uniform(25, 110)
    return strength * np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))


def photograph(image, rng, scene, frame_size=FRAME_SIZE):
    """Render one X-ray (BGR or grey uint8) as a camera frame of ``scene``; returns a Photo."""
    if scene not in SCENE_RENDERERS:
        raise ConfigError("unknown scene {!r}. Fix: use one of {}".format(scene, ", ".join(SCENES)))
    grey = _grey(image).astype(np.float32)
    img_h, img_w = grey.shape
    quad, angle = random_quad(rng, (img_w, img_h), frame_size)
    source = np.array([[0, 0], [img_w, 0], [img_w, img_h], [0, img_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, quad)
    xray = cv2.warpPerspective(grey, matrix, frame_size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(grey), matrix, frame_size, flags=cv2.INTER_LINEAR)
    light, scene_params = SCENE_RENDERERS[scene](rng, xray, mask, frame_size)
    # Glare: a specular reflection on the glossy film or the screen's glass, not on the matte surround.
    light = light + _glare(rng, quad, frame_size) * mask
    cast = rng.uniform(0.86, 1.1, size=3)
    frame = light[:, :, None] * cast[None, None, :].astype(np.float32)
    sigma = rng.uniform(0.0, 1.6)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    noise = rng.uniform(1.5, 6.0)
    frame = frame + rng.normal(0.0, noise, size=frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    quality = int(rng.randint(JPEG_RANGE[0], JPEG_RANGE[1] + 1))
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("JPEG encoding of a rendered frame failed")
    jpeg = encoded.tobytes()
    params = {"scene": scene, "tilt_deg": round(angle, 2), "blur_sigma": round(sigma, 2),
              "noise": round(noise, 2), "jpeg_quality": quality, "cast": [round(c, 3) for c in cast]}
    params.update(scene_params)
    return Photo(cv2.imdecode(encoded, cv2.IMREAD_COLOR), jpeg, quad, params)


def photograph_file(path, seed, index, scene=None):
    """Render image ``path`` as frame ``index`` of a run with ``seed`` (scene alternates if None)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ImageError("{}: not a readable image".format(path))
    return photograph(image, _rng(seed, index), scene or SCENES[index % len(SCENES)])


def photograph_samples(samples, out_dir, seed=0, scenes=SCENES, limit=None):
    """Write one frame per sample (scenes alternate) as JPEG + ``photographed.json``; returns the index.

    The index lists, per frame, the source image, its labels, the scene, the ground-truth quad and
    the drawn parameters, so localisation IoU and accuracy can be measured against the files.
    """
    for scene in scenes:
        if scene not in SCENE_RENDERERS:
            raise ConfigError("unknown scene {!r}. Fix: use one of {}".format(scene, ", ".join(SCENES)))
    os.makedirs(out_dir, exist_ok=True)
    samples = list(samples)[:limit] if limit else list(samples)
    frames = []
    for index, sample in enumerate(samples):
        scene = scenes[index % len(scenes)]
        photo = photograph_file(sample.path, seed, index, scene)
        name = "{:05d}-{}-{}.jpg".format(index, scene, os.path.splitext(os.path.basename(sample.path))[0])
        with open(os.path.join(out_dir, name), "wb") as handle:
            handle.write(photo.jpeg)
        frames.append({"frame": name, "source": os.path.abspath(sample.path), "labels": list(sample.labels),
                       "patient": sample.patient_id, "scene": scene,
                       "quad": [[round(float(x), 2), round(float(y), 2)] for x, y in photo.quad],
                       "params": photo.params})
    index = {"format": FORMAT, "version": 1, "seed": int(seed), "frame_size": list(FRAME_SIZE),
             "scenes": list(scenes), "frames": frames}
    with open(os.path.join(out_dir, "photographed.json"), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return index


def read_index(out_dir):
    """The ``photographed.json`` of a folder written by ``photograph_samples``."""
    path = os.path.join(str(out_dir), "photographed.json")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError("{}: cannot be read ({}). Fix: make it with `medkiosk data photograph`".format(
            path, exc.strerror)) from exc
    if data.get("format") != FORMAT:
        raise ConfigError("{}: not a photographed-set index. Fix: make it with `medkiosk data photograph`"
                          .format(path))
    return data
