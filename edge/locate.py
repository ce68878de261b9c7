"""Find the X-ray in a camera frame: ``locate(frame_bgr) -> Localisation``. Pure, no torch.

A health worker holds a film against a lightbox (bright surround, the film darker inside) or points
the camera at a monitor (a bright image on a dark bezel). Both have a *uniform surround*: the
border ring of the frame is one smooth illumination. The steps, on a copy reduced to
``WORK_WIDTH`` pixels wide (the cost does not grow with the camera resolution):

1. letterbox bars (near-black rows/columns at the edges) are cut away;
2. a plane ``a + b*x + c*y`` is fitted to the grey levels of the border ring (the lightbox's
   light gradient); pixels within a tolerance of it *and* connected to the border are the surround;
3. the largest remaining region is the film/screen; its four corners are the extremes along the
   diagonals of its outline, refined by a line fitted to each side and intersected;
4. the quadrilateral is warped to an upright rectangle from the full-resolution frame.

When the border ring is not uniform the frame is either a digital X-ray (grey: the whole image is
the X-ray, returned unchanged, ``method="whole"``) or something else (colour: not found, the
fixed ``GUIDE`` rectangle is used). ``OutlineTracker`` turns per-frame results into the live
states "searching", "hold_still" and "locked".
"""

from edge.lazy import require

WORK_WIDTH = 160
# Bars: an edge row/column is "black" when its brightest pixel is at most this, and bars are
# letterboxing when together they take at least MIN_BARS of the frame's width (height).
BAR_LEVEL = 16
MIN_BARS = 0.08
VIDEO_ASPECT = 1.3
# Surround: within max(SURROUND_TOLERANCE, SURROUND_SPREAD * residual spread) + SURROUND_RELATIVE *
# level of the ring's surface (a bright lightbox varies more in absolute grey levels than a bezel).
SURROUND_TOLERANCE = 6.0
SURROUND_SPREAD = 4.0
SURROUND_RELATIVE = 0.08
# The ring is uniform when its robust residual spread (1.4826 * MAD) is at most this.
UNIFORM_RING_SPREAD = 9.0
# A film/screen covers this fraction of the (bar-free) frame.
MIN_AREA, MAX_AREA = 0.12, 0.985
# Mean chroma above this: a colour scene, not a grey X-ray.
GREY_CHROMA = 14.0
# Texture: a grey frame whose grey levels vary less than this is blank (a wall, an empty lightbox).
MIN_CONTRAST = 18.0
CROP_MAX_SIDE = 384
# The guide rectangle, as fractions of the frame (x0, y0, x1, y1): a portrait film, centred.
GUIDE = (0.30, 0.08, 0.70, 0.92)
GUIDE_TEXT = "Place the X-ray inside the frame"


class Localisation(object):
    """Where the X-ray is in a frame and the rectified image to classify.

    ``quad``: 4x2 float32 corners TL, TR, BR, BL in frame pixels (the guide's when not found);
    ``crop``: the image to classify, made on first use (the live preview needs only the quad);
    ``method``: lightbox, screen, whole, letterbox or guide.
    """

    def __init__(self, found, quad, method, frame, box=None, crop=None):
        self.found = bool(found)
        self.quad = quad
        self.method = method
        self.frame_size = (int(frame.shape[1]), int(frame.shape[0]))  # (width, height)
        self._frame = frame
        self._box = box  # an axis-aligned crop (letterbox): a view, no warp
        self._crop = crop  # given: the frame itself (whole)

    @property
    def crop(self):
        """The rectified image; made from the frame on first use, so use it before the frame's buffer
        is reused (a camera source may recycle it)."""
        if self._crop is None:
            if self._box is not None:
                x0, y0, x1, y1 = self._box
                self._crop = self._frame[y0:y1, x0:x1]
            else:
                self._crop = _warp(self._frame, self.quad)
            self._frame = None
        return self._crop

    @property
    def identity(self):
        """True when the crop is the frame itself (a digital X-ray)."""
        return self.method == "whole"

    def to_dict(self):
        return {"found": self.found, "method": self.method,
                "quad": [[round(float(x), 1), round(float(y), 1)] for x, y in self.quad],
                "frame_size": list(self.frame_size),
                "crop_size": [int(self.crop.shape[1]), int(self.crop.shape[0])]}

    def __repr__(self):
        return "Localisation(found={}, method={!r})".format(self.found, self.method)


def guide_quad(width, height):
    """The GUIDE rectangle in pixels of a ``width`` x ``height`` frame, TL, TR, BR, BL."""
    x0, y0, x1, y1 = GUIDE
    return require("numpy").array([[x0 * width, y0 * height], [x1 * width, y0 * height],
                        [x1 * width, y1 * height], [x0 * width, y1 * height]], dtype=require("numpy").float32)


def _bar_bounds(grey):
    """(x0, y0, x1, y1) of the part of a small grey image inside letterbox bars: near-black columns
    (rows) at the ends of the long side of a video-shaped frame (aspect at least VIDEO_ASPECT) that
    together take at least MIN_BARS of it. Dark edges of a square or portrait digital X-ray belong
    to the image and are kept."""
    np = require("numpy")
    height, width = grey.shape
    box = [0, 0, width, height]
    if width >= VIDEO_ASPECT * height:
        axis, size, low, high = 0, width, 0, 2
    elif height >= VIDEO_ASPECT * width:
        axis, size, low, high = 1, height, 1, 3
    else:
        return tuple(box)
    keep = np.flatnonzero(grey.max(axis=axis) > BAR_LEVEL)
    if keep.size:
        first, last = int(keep[0]), int(keep[-1]) + 1
        if first + (size - last) >= MIN_BARS * size:
            box[low], box[high] = first, last
    return tuple(box)


def _ring_plane(grey):
    """Fit a quadratic surface in x, y to the 2-pixel border ring (the lightbox's uneven light);
    returns (surface image, robust spread of the ring's residuals)."""
    np = require("numpy")
    height, width = grey.shape
    ring = np.zeros((height, width), dtype=bool)
    ring[:2, :] = ring[-2:, :] = True
    ring[:, :2] = ring[:, -2:] = True
    ys, xs = np.nonzero(ring)
    values = grey[ys, xs].astype(np.float64)
    u, v = xs / float(width) - 0.5, ys / float(height) - 0.5
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=1)
    coef = np.linalg.solve(design.T.dot(design) + 1e-6 * np.eye(6), design.T.dot(values))
    residual = values - design.dot(coef)
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    gu = (np.arange(width, dtype=np.float32) / float(width) - 0.5)[None, :]
    gv = (np.arange(height, dtype=np.float32) / float(height) - 0.5)[:, None]
    c = [np.float32(value) for value in coef]
    surface = c[0] + c[1] * gu + c[2] * gv + c[3] * gu * gu + c[4] * gv * gv + c[5] * gu * gv
    return surface, spread


def _region_mask(grey, plane, spread):
    """The non-surround region: not within the tolerance of the ring plane, or not border-connected."""
    cv2, np = require("cv2"), require("numpy")
    tolerance = max(SURROUND_TOLERANCE, SURROUND_SPREAD * spread) + SURROUND_RELATIVE * np.abs(plane)
    surround = (np.abs(grey.astype(np.float32) - plane) <= tolerance).astype(np.uint8)
    surround = cv2.morphologyEx(surround, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels = cv2.connectedComponents(surround, connectivity=4)[:2]
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    if count <= 1 or touching.size == 0:
        return None
    region = (~np.isin(labels, touching)).astype(np.uint8)
    return cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))


def _intersect(line_a, line_b):
    np = require("numpy")
    (vx1, vy1, x1, y1), (vx2, vy2, x2, y2) = line_a, line_b
    matrix = np.array([[vx1, -vx2], [vy1, -vy2]], dtype=np.float64)
    if abs(np.linalg.det(matrix)) < 1e-6:
        return None
    t = np.linalg.solve(matrix, np.array([x2 - x1, y2 - y1], dtype=np.float64))[0]
    return x1 + t * vx1, y1 + t * vy1


def _refine(points, corners):
    """Fit a line to the outline points of each side (away from the corners) and intersect them."""
    cv2, np = require("cv2"), require("numpy")
    lines = []
    for index in range(4):
        start, end = corners[index], corners[(index + 1) % 4]
        direction = end - start
        length = float(np.hypot(direction[0], direction[1]))
        if length < 4:
            return corners
        unit = direction / length
        rel = points - start
        along = rel.dot(unit)
        across = np.abs(rel[:, 0] * unit[1] - rel[:, 1] * unit[0])
        keep = (along > 0.12 * length) & (along < 0.88 * length) & (across < max(2.0, 0.04 * length))
        if keep.sum() < 6:
            return corners
        line = cv2.fitLine(points[keep].astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01)
        lines.append([float(v) for v in np.asarray(line).reshape(-1)])
    refined = []
    for index in range(4):
        point = _intersect(lines[index - 1], lines[index])
        if point is None:
            return corners
        refined.append(point)
    refined = np.array(refined, dtype=np.float32)
    if np.abs(refined - corners).max() > 0.1 * float((corners.max(axis=0) - corners.min(axis=0)).max()):
        return corners  # a line pulled off by a notch: keep the plain corners
    return refined


def _quad_of(region):
    """The four corners (TL, TR, BR, BL) of the largest region, or None when it is no film."""
    cv2, np = require("cv2"), require("numpy")
    contours = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[-2]
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    if area < MIN_AREA * region.size or area > MAX_AREA * region.size:
        return None
    points = contour.reshape(-1, 2).astype(np.float32)
    total, diff = points[:, 0] + points[:, 1], points[:, 0] - points[:, 1]
    corners = np.array([points[np.argmin(total)], points[np.argmax(diff)], points[np.argmax(total)],
                        points[np.argmin(diff)]], dtype=np.float32)
    corners = _refine(points, corners)
    hull_area = cv2.contourArea(cv2.convexHull(contour))
    quad_area = cv2.contourArea(corners.reshape(-1, 1, 2))
    # The region must be quadrilateral: its outline fills the quad, and the quad is its hull.
    if quad_area <= 0 or area < 0.85 * quad_area or quad_area < 0.85 * hull_area:
        return None
    return corners


def _chroma(small_bgr):
    np = require("numpy")
    channels = small_bgr.reshape(-1, 3).astype(np.int16)
    return float(np.abs(channels - channels.mean(axis=1, keepdims=True)).mean() * 2.0)


def _warp(frame, quad):
    """Warp ``quad`` of ``frame`` to an upright rectangle (longest side at most CROP_MAX_SIDE)."""
    cv2, np = require("cv2"), require("numpy")
    tl, tr, br, bl = quad
    width = (np.hypot(*(tr - tl)) + np.hypot(*(br - bl))) / 2.0
    height = (np.hypot(*(bl - tl)) + np.hypot(*(br - tr))) / 2.0
    scale = min(1.0, CROP_MAX_SIDE / max(width, height, 1.0))
    out_w, out_h = max(8, int(round(width * scale))), max(8, int(round(height * scale)))
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    return cv2.warpPerspective(frame, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _full_box(box, scale, width, height):
    """A small-image box (x0, y0, x1, y1) in full-resolution pixels, inside the frame."""
    x0, y0, x1, y1 = [int(round(v / scale)) for v in box]
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _box_quad(box):
    np = require("numpy")
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def _small(frame):
    """(colour, grey, scale): the frame reduced by an integer factor to about WORK_WIDTH wide.
    An integer factor keeps INTER_AREA on its fast path (a quarter of the cost)."""
    cv2 = require("cv2")
    height, width = frame.shape[:2]
    factor = max(1, int(round(width / float(WORK_WIDTH))))
    if factor > 1 and height >= 8 * factor:
        usable = frame[:height - height % factor, :width - width % factor]
        small = cv2.resize(usable, (usable.shape[1] // factor, usable.shape[0] // factor),
                           interpolation=cv2.INTER_AREA)
    else:
        factor, small = 1, frame
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small, grey, 1.0 / factor


def _as_bgr(frame):
    cv2 = require("cv2")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _find_quad(frame, grey, scale):
    """A Localisation of the film/screen when the frame's border ring is one uniform surround."""
    np = require("numpy")
    surface, spread = _ring_plane(grey)
    if spread > UNIFORM_RING_SPREAD:
        return None
    region = _region_mask(grey, surface, spread)
    corners = _quad_of(region) if region is not None else None
    if corners is None:
        return None
    quad = (corners + np.float32(0.5)) / np.float32(scale) - np.float32(0.5)
    method = "lightbox" if float(surface.mean()) > float(grey[region > 0].mean()) else "screen"
    return Localisation(True, quad, method, frame)


def _whole_image(frame, colour, grey, scale):
    """A Localisation of a digital X-ray (grey, textured): the frame without its black bars."""
    height, width = frame.shape[:2]
    box = _bar_bounds(grey)
    x0, y0, x1, y1 = box
    inner = grey[y0:y1, x0:x1]
    if inner.shape[0] < 8 or inner.shape[1] < 8 or float(inner.std()) < MIN_CONTRAST:
        return None
    if _chroma(colour[y0:y1, x0:x1]) > GREY_CHROMA:
        return None
    if box == (0, 0, grey.shape[1], grey.shape[0]):
        return Localisation(True, _box_quad((0, 0, width, height)), "whole", frame, crop=frame)
    full = _full_box(box, scale, width, height)
    return Localisation(True, _box_quad(full), "letterbox", frame, box=full)


def locate(frame_bgr):
    """BGR (or grey) uint8 frame -> Localisation (see the module docstring)."""
    frame = _as_bgr(frame_bgr)
    colour, grey, scale = _small(frame)
    found = _find_quad(frame, grey, scale) or _whole_image(frame, colour, grey, scale)
    if found is not None:
        return found
    height, width = frame.shape[:2]
    return Localisation(False, guide_quad(width, height), "guide", frame)


def quad_iou(quad_a, quad_b):
    """Intersection over union of two convex quadrilaterals (4x2 corners)."""
    cv2, np = require("cv2"), require("numpy")
    a, b = np.asarray(quad_a, np.float32), np.asarray(quad_b, np.float32)
    inter = cv2.intersectConvexConvex(a, b)[0]
    union = cv2.contourArea(a) + cv2.contourArea(b) - inter
    return float(inter / union) if union > 0 else 0.0


SEARCHING, HOLD_STILL, LOCKED = "searching", "hold_still", "locked"


class OutlineTracker(object):
    """Live outline state from successive Localisations.

    ``searching``: nothing found; ``hold_still``: found, but a corner moved more than
    ``max_motion`` (a fraction of the frame's diagonal) since the previous frame, or the outline
    has been still for fewer than ``frames`` frames; ``locked``: still for ``frames`` frames.
    """

    def __init__(self, frames=5, max_motion=0.01):
        self.frames = int(frames)
        self.max_motion = float(max_motion)
        self._previous = None
        self._still = 0
        self.state = SEARCHING

    def update(self, localisation):
        np = require("numpy")
        if not localisation.found:
            self._previous, self._still, self.state = None, 0, SEARCHING
            return self.state
        quad = np.asarray(localisation.quad, np.float32)
        diagonal = float(np.hypot(*localisation.frame_size))
        if self._previous is not None and \
                float(np.hypot(*(quad - self._previous).T).max()) <= self.max_motion * diagonal:
            self._still += 1
        else:
            self._still = 0
        self._previous = quad
        self.state = LOCKED if self._still >= self.frames else HOLD_STILL
        return self.state

    def reset(self):
        self._previous, self._still, self.state = None, 0, SEARCHING
