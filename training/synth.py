"""Project-generated images for tests, demos and benchmarks (numpy + OpenCV only, no torch).

- ``generate_dataset``: a learnable multi-class set of shapes; each class has its own shape, texture
  and colour, drawn at a random position and scale on a random low-saturation background with noise.
- ``generate_skin_like``: skin-photo-like images (skin tone, illumination gradient, pores, a lesion
  blob, optional hairs). Used for skin-module tests and as "not a chest X-ray" inputs; no real skin
  photos are used anywhere in this project.
- ``generate_video``: a short video file (MJPG .avi or mp4v .mp4) for kiosk tests and benchmarks.
"""

import os

from edge.errors import ConfigError, SourceError
from edge.lazy import require

# (class name, hue in OpenCV's 0..179 scale): shapes and hues both differ between classes, so a
# small CNN separates them quickly while position/scale/background/noise keep it from being trivial.
SHAPE_CLASSES = (
    ("circle", 0),
    ("square", 60),
    ("triangle", 120),
    ("stripes", 30),
    ("cross", 150),
    ("ring", 90),
    ("checker", 15),
    ("star", 105),
)
MAX_CLASSES = len(SHAPE_CLASSES)
# Shape radius as a fraction of the image size: large enough for a small CNN to learn in 1-2 epochs.
SHAPE_RADIUS = (0.24, 0.38)

# Skin tones (BGR) from light to dark, and lesion colours (BGR).
SKIN_TONES = ((196, 214, 242), (170, 196, 232), (140, 170, 214), (105, 140, 190), (75, 105, 150),
              (50, 72, 110), (35, 50, 80))
LESION_COLOURS = ((40, 60, 110), (30, 40, 80), (70, 80, 190), (120, 120, 210), (220, 225, 235),
                  (60, 90, 150), (90, 60, 140))


def _np():
    return require("numpy", "pip install numpy")


def _cv2():
    return require("cv2", "pip install 'medkiosk[train]' (opencv-python-headless)")


def _write_png(path, image):
    cv2 = _cv2()
    if not cv2.imwrite(path, image):
        raise ConfigError("cannot write {}: check the folder is writable".format(path))


def _hsv_colour(hue, saturation, value):
    np = _np()
    cv2 = _cv2()
    pixel = np.array([[[int(hue) % 180, int(saturation), int(value)]]], dtype=np.uint8)
    bgr = cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def _background(rng, size):
    """A low-saturation background: random base grey/tint, a linear gradient and blotches."""
    np = _np()
    cv2 = _cv2()
    base = rng.uniform(70, 190)
    tint = rng.uniform(-15, 15, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy - 0.5) * rng.uniform(0, 60)
    blotches = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 10.0)
    blotches *= rng.uniform(5, 25) / (blotches.std() + 1e-6)
    grey = base + gradient + blotches
    image = grey[:, :, None] + tint[None, None, :]
    return image.astype(np.float32)


def _shape_mask(rng, kind, size):
    """A float mask in [0, 1] with one instance of the class's shape at a random place and scale."""
    np = _np()
    cv2 = _cv2()
    mask = np.zeros((size, size), dtype=np.uint8)
    radius = int(size * rng.uniform(*SHAPE_RADIUS))
    margin = radius + 2
    cx = int(rng.integers(margin, max(margin + 1, size - margin)))
    cy = int(rng.integers(margin, max(margin + 1, size - margin)))
    angle = rng.uniform(0, 360)
    if kind == "circle":
        cv2.circle(mask, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(mask, (cx, cy), radius, 255, max(3, radius // 3), cv2.LINE_AA)
    elif kind in ("square", "triangle", "star"):
        if kind == "square":
            angles = np.deg2rad(angle + np.array([45, 135, 225, 315]))
            radii = np.full(4, radius * 1.2)
        elif kind == "triangle":
            angles = np.deg2rad(angle + np.array([0, 120, 240]))
            radii = np.full(3, radius * 1.3)
        else:
            angles = np.deg2rad(angle + np.arange(10) * 36.0)
            radii = np.where(np.arange(10) % 2 == 0, radius * 1.25, radius * 0.5)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == "cross":
        for offset in (0, 90):
            theta = np.deg2rad(angle + offset)
            dx, dy = radius * np.cos(theta), radius * np.sin(theta)
            cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 255,
                     max(3, radius // 3), cv2.LINE_AA)
    elif kind in ("stripes", "checker"):
        # A textured patch: the texture, cut out by a square window.
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        theta = np.deg2rad(angle)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        period = max(4.0, radius / 2.0)
        if kind == "stripes":
            texture = (np.floor(u / period) % 2 == 0)
        else:
            texture = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
        window = (np.abs(u) <= radius) & (np.abs(v) <= radius)
        mask[(texture & window)] = 255
    else:
        raise ConfigError("unknown synthetic shape {!r}".format(kind))
    return mask.astype(np.float32) / 255.0


def draw_shape_image(rng, class_index, size):
    """One BGR uint8 image of class ``class_index`` (index into SHAPE_CLASSES)."""
    np = _np()
    kind, hue = SHAPE_CLASSES[class_index]
    image = _background(rng, size)
    mask = _shape_mask(rng, kind, size)
    colour = np.array(_hsv_colour(hue + rng.integers(-6, 7), rng.uniform(190, 255), rng.uniform(170, 255)),
                      dtype=np.float32)
    image = image * (1.0 - mask[:, :, None]) + colour[None, None, :] * mask[:, :, None]
    # A distractor: a faint grey blob, so "any object" is not enough to tell a class.
    distractor = _shape_mask(rng, SHAPE_CLASSES[int(rng.integers(0, MAX_CLASSES))][0], size)
    image += distractor[:, :, None] * rng.uniform(-20, 20)
    image += rng.normal(0, rng.uniform(3, 12), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def class_names(num_classes):
    """The names of the first ``num_classes`` synthetic classes."""
    if not 2 <= int(num_classes) <= MAX_CLASSES:
        raise ConfigError("synthetic data supports 2..{} classes, got {}".format(MAX_CLASSES, num_classes))
    return [name for name, _hue in SHAPE_CLASSES[:int(num_classes)]]


def generate_dataset(out_dir, num_classes=4, per_class=40, size=96, seed=0):
    """Write ``out_dir/<class>/<nnn>.png`` for a learnable synthetic set; return the class names.

    Deterministic: the same arguments write byte-identical files.
    """
    np = _np()
    names = class_names(num_classes)
    if int(per_class) < 1:
        raise ConfigError("per_class must be >= 1, got {}".format(per_class))
    if int(size) < 16:
        raise ConfigError("size must be >= 16 pixels, got {}".format(size))
    for index, name in enumerate(names):
        folder = os.path.join(str(out_dir), name)
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng([int(seed), index])
        for number in range(int(per_class)):
            _write_png(os.path.join(folder, "{:03d}.png".format(number)),
                       draw_shape_image(rng, index, int(size)))
    return names


def draw_skin_image(rng, size, lesion_colour=None, hair=None):
    """One skin-photo-like BGR uint8 image."""
    np = _np()
    cv2 = _cv2()
    tone = np.array(SKIN_TONES[int(rng.integers(0, len(SKIN_TONES)))], dtype=np.float32)
    tone += rng.uniform(-12, 12, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Illumination: a off-centre light falling off towards the edges, plus a gradient.
    lx, ly = rng.uniform(0.2, 0.8, size=2)
    light = 1.0 - rng.uniform(0.2, 0.5) * ((xx - lx) ** 2 + (yy - ly) ** 2)
    angle = rng.uniform(0, 2 * np.pi)
    light += (np.cos(angle) * xx + np.sin(angle) * yy - 0.5) * rng.uniform(0.0, 0.3)
    image = tone[None, None, :] * light[:, :, None]
    # Skin texture: fine pores (dark specks) and mid-frequency mottling.
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    mottling = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 30.0)
    mottling /= mottling.std() + 1e-6
    pores = (rng.random((size, size)) < 0.004).astype(np.float32)
    pores = cv2.GaussianBlur(pores, (0, 0), 1.0) * 12.0
    image += (fine * 4.0 + mottling * 5.0 - pores * 20.0)[:, :, None]
    # The lesion: an irregular blob (ellipse with a noisy border), soft-edged.
    if lesion_colour is None:
        lesion_colour = LESION_COLOURS[int(rng.integers(0, len(LESION_COLOURS)))]
    colour = np.array(lesion_colour, dtype=np.float32) + rng.uniform(-15, 15, size=3)
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    ax, ay = rng.uniform(0.08, 0.25, size=2) * size
    theta = rng.uniform(0, np.pi)
    u = ((xx * size - cx) * np.cos(theta) + (yy * size - cy) * np.sin(theta)) / ax
    v = (-(xx * size - cx) * np.sin(theta) + (yy * size - cy) * np.cos(theta)) / ay
    border = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 25.0)
    border /= border.std() + 1e-6
    distance = np.sqrt(u ** 2 + v ** 2) + border * rng.uniform(0.05, 0.25)
    lesion = np.clip((1.0 - distance) * 4.0, 0.0, 1.0)
    lesion = cv2.GaussianBlur(lesion, (0, 0), max(0.8, size / 150.0))
    shaded = colour[None, None, :] * light[:, :, None] + (mottling * 6.0)[:, :, None]
    image = image * (1.0 - lesion[:, :, None]) + shaded * lesion[:, :, None]
    # Optional hairs: dark thin curves across the field.
    if hair is None:
        hair = rng.random() < 0.5
    if hair:
        hair_layer = np.zeros((size, size), dtype=np.uint8)
        for _ in range(int(rng.integers(2, 9))):
            start = rng.uniform(0, size, size=2)
            direction = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.3, 0.9) * size
            bend = rng.uniform(-0.6, 0.6)
            steps = np.linspace(0, 1, 12)
            pts = np.stack([start[0] + np.cos(direction + bend * steps) * length * steps,
                            start[1] + np.sin(direction + bend * steps) * length * steps], axis=1)
            cv2.polylines(hair_layer, [np.round(pts).astype(np.int32)], False, 255,
                          max(1, size // 160), cv2.LINE_AA)
        hair_mask = hair_layer.astype(np.float32)[:, :, None] / 255.0
        image = image * (1.0 - 0.8 * hair_mask) + 25.0 * hair_mask * 0.8
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_skin_like(out_dir, count, size=224, seed=0, classes=None):
    """Write skin-photo-like PNGs; return their paths.

    Without ``classes``: ``count`` images ``out_dir/skin_<nnnn>.png``. With ``classes`` (a list of
    names): ``count`` images per class in ``out_dir/<class>/``, each class with its own lesion colour,
    so a model can learn them (the images are not medically meaningful).
    """
    np = _np()
    if int(count) < 1:
        raise ConfigError("count must be >= 1, got {}".format(count))
    if int(size) < 32:
        raise ConfigError("size must be >= 32 pixels, got {}".format(size))
    paths = []
    if classes is None:
        os.makedirs(str(out_dir), exist_ok=True)
        rng = np.random.default_rng([int(seed), 1000])
        for number in range(int(count)):
            path = os.path.join(str(out_dir), "skin_{:04d}.png".format(number))
            _write_png(path, draw_skin_image(rng, int(size)))
            paths.append(path)
        return paths
    for index, name in enumerate(classes):
        folder = os.path.join(str(out_dir), str(name))
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng([int(seed), 2000 + index])
        colour = LESION_COLOURS[index % len(LESION_COLOURS)]
        for number in range(int(count)):
            path = os.path.join(folder, "{:03d}.png".format(number))
            _write_png(path, draw_skin_image(rng, int(size), lesion_colour=colour))
            paths.append(path)
    return paths


VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}


def _fit_frame(image, size):
    """Letterbox an image into a (width, height) frame."""
    np = _np()
    cv2 = _cv2()
    width, height = size
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    scale = min(width / float(w), height / float(h))
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    frame[top:top + new_h, left:left + new_w] = resized
    return frame


def generate_video(path, frames, size=(640, 480), fps=15, images=None, seed=0, frames_per_image=None):
    """Write a video of ``frames`` frames (``size`` = (width, height)); return its path.

    ``images``: image paths or BGR arrays shown in turn (letterboxed, with slight sensor noise);
    default: synthetic shape images. ``.avi`` uses MJPG (always available in pip OpenCV), ``.mp4``
    mp4v. The file is read back to check that OpenCV can decode it.
    """
    np = _np()
    cv2 = _cv2()
    from edge.preprocess import load_image

    path = str(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_CODECS:
        raise ConfigError("video {}: use one of {}".format(path, ", ".join(sorted(VIDEO_CODECS))))
    if int(frames) < 1:
        raise ConfigError("frames must be >= 1, got {}".format(frames))
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(int(seed))
    if images:
        sources = [load_image(item) if isinstance(item, (str, os.PathLike)) else item for item in images]
    else:
        sources = [draw_shape_image(rng, index % 4, 160) for index in range(4)]
    stills = [_fit_frame(image, (width, height)) for image in sources]
    per_image = int(frames_per_image) if frames_per_image else max(1, int(frames) // len(stills))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), float(fps), (width, height))
    if not writer.isOpened():
        raise SourceError("cannot open a {} video writer for {}: this OpenCV build lacks the codec; "
                          "use .avi (MJPG)".format(VIDEO_CODECS[ext], path))
    try:
        for number in range(int(frames)):
            still = stills[(number // per_image) % len(stills)]
            noise = rng.normal(0, 2.0, still.shape)
            writer.write(np.clip(still.astype(np.float32) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    capture = cv2.VideoCapture(path)
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None or frame.shape[:2] != (height, width):
        raise SourceError("video {} was written but cannot be read back by OpenCV; "
                          "use .avi (MJPG)".format(path))
    return path
