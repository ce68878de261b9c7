"""Text on the kiosk screen in the worker's language: FreeType through Pillow, or OpenCV's Hershey.

``cv2.putText`` (Hershey) draws ASCII only, so Hindi or Bengali need a real font engine: Pillow's
FreeType with RAQM layout (HarfBuzz shaping: conjuncts, vowel signs placed before their consonant)
and a font from the system packages, found at the paths Debian/Ubuntu install them to or through
fontconfig (``fc-list :lang=hi``), never downloaded. English draws with a Latin font when one is
installed and falls back to Hershey (said once on stderr) when none is; a language whose script has
no font, or that needs shaping without libraqm, is a ConfigError naming the apt package. (OpenCV's
``cv2.freetype`` is opencv_contrib, absent from JetPack's OpenCV and from pip's headless wheels.)

Both engines answer the same calls, ``width(text, px, bold)``, ``line_height(px, bold)``,
``draw(canvas, text, x, baseline, px, colour, bold)``, ``ink_box`` (where a drawn text's ink goes),
``cap_height(px, bold)`` (how tall its capitals, and the script's letters, are drawn) and
``min_px(cap_px, bold)`` (the smallest ``px`` whose capitals are ``cap_px`` tall: the readable floor);
``px`` is the height of "Ag" in pixels.
FreeType lines are rendered once into an alpha mask and kept (``GlyphCache``), so a text drawn
every frame costs one blend, not a rasterisation.
"""

import os
import subprocess
import sys
import unicodedata
from collections import OrderedDict

from edge.errors import ConfigError
from edge.i18n import set_language
from edge.lazy import require

NOTO = "/usr/share/fonts/truetype/noto/"
LOHIT = "/usr/share/fonts/truetype/"
DEJAVU = "/usr/share/fonts/truetype/dejavu/"


class Script(object):
    """A writing system: its Unicode blocks, its fonts (regular, bold) in order, the apt packages."""

    def __init__(self, name, blocks, fonts, fc_lang, packages, shaping, letter="H"):
        self.name = name
        self.letter = letter  # a letter as tall as the script's capitals (headline to baseline)
        self.blocks = blocks
        self.fonts = fonts
        self.fc_lang = fc_lang
        self.packages = packages
        self.shaping = shaping  # needs RAQM (HarfBuzz) layout to be drawn correctly

    def covers(self, char):
        code = ord(char)
        return any(low <= code <= high for low, high in self.blocks)


# Noto ships as fonts-noto-core on Debian 11+/Ubuntu 20.04+ and fonts-noto-hinted on Ubuntu 18.04
# (JetPack 4.6), at the same paths; Lohit is the smaller alternative on both.
SCRIPTS = {
    "latin": Script("latin", ((0x0000, 0x024F),), (
        (NOTO + "NotoSans-Regular.ttf", NOTO + "NotoSans-Bold.ttf"),
        (DEJAVU + "DejaVuSans.ttf", DEJAVU + "DejaVuSans-Bold.ttf"),
    ), "en", "fonts-dejavu-core", False),
    "devanagari": Script("devanagari", ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x200C, 0x200D)), (
        (NOTO + "NotoSansDevanagari-Regular.ttf", NOTO + "NotoSansDevanagari-Bold.ttf"),
        (LOHIT + "lohit-devanagari/Lohit-Devanagari.ttf", None),
        (LOHIT + "Gargi/Gargi.ttf", None),
    ), "hi", "fonts-lohit-deva (or fonts-noto-core; fonts-noto-hinted on Ubuntu 18.04)", True,
       "\u0915"),
    "bengali": Script("bengali", ((0x0980, 0x09FF), (0x0964, 0x0965), (0x200C, 0x200D)), (
        (NOTO + "NotoSansBengali-Regular.ttf", NOTO + "NotoSansBengali-Bold.ttf"),
        (LOHIT + "lohit-bengali/Lohit-Bengali.ttf", None),
    ), "bn", "fonts-lohit-beng-bengali (or fonts-noto-core; fonts-noto-hinted on Ubuntu 18.04)", True,
       "\u0995"),
}
# language -> its script (English: Latin only)
LANGUAGE_SCRIPTS = {"en": "latin", "hi": "devanagari", "bn": "bengali"}
PILLOW_HINT = ("apt-get install python3-pil (JetPack) or pip install 'Pillow==8.4.0' (Python 3.6) / "
               "'Pillow>=9' (3.10+)")
RAQM_HINT = "apt-get install libraqm0 (Ubuntu 18.04: universe)"
CACHE_ENTRIES = 512
LINE_SPACING = 0.82
SIZE_PER_PX = 1.32  # FreeType em size per pixel of "Ag" height: matches the Hershey text's visual size


def _fc_list(lang):
    """Font files fontconfig knows for ``lang`` (empty when fc-list is absent or fails)."""
    try:
        output = subprocess.run(["fc-list", ":lang={}".format(lang), "file"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    files = [line.strip().rstrip(":") for line in output.decode("utf-8", "replace").splitlines()]
    return sorted(f for f in files if f.lower().endswith((".ttf", ".otf")) and "bold" not in f.lower())


def find_font(script, exists=os.path.isfile, fc_list=_fc_list):
    """(regular, bold) font files for ``script`` (a Script); bold is the regular one when absent; None."""
    for regular, bold in script.fonts:
        if exists(regular):
            return regular, bold if bold and exists(bold) else regular
    found = fc_list(script.fc_lang)
    return (found[0], found[0]) if found else None


def _pillow():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    return Image, ImageDraw, ImageFont


def has_raqm(image_font):
    """Whether Pillow can shape text with libraqm (HarfBuzz + FriBiDi)."""
    have = getattr(getattr(image_font, "core", None), "HAVE_RAQM", None)
    if have is None:
        try:
            from PIL import features
            have = features.check("raqm")
        except (ImportError, ValueError):
            have = False
    return bool(have)


def _raqm_layout(image_font):
    layout = getattr(image_font, "Layout", None)
    return layout.RAQM if layout is not None else image_font.LAYOUT_RAQM


_REPLACEMENTS = {"\u2014": "-", "\u2013": "-", "\u2026": "...", "\u00d7": "x", "\u2265": ">=",
                 "\u2264": "<=", "\u00b5": "u", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}


def ascii_text(text):
    """Fold text to what Hershey fonts can draw (em dash -> '-', accents dropped)."""
    text = "".join(_REPLACEMENTS.get(ch, ch) for ch in "{}".format(text))
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _cut_cluster(text):
    """``text`` without a trailing combining mark or virama left alone by a cut."""
    while text and (unicodedata.category(text[-1]).startswith("M") or text[-1] in "\u094d\u09cd\u200c\u200d"):
        text = text[:-1]
    return text


class _Floor(object):
    """``min_px``: the smallest size whose capitals (and script letters) are at least ``cap_px`` tall."""

    def min_px(self, cap_px, bold=False):
        floors = self.__dict__.setdefault("_floors", {})
        key = (cap_px, bool(bold))
        if key not in floors:
            px = cap_px * 0.5
            while self.cap_height(px, bold) < cap_px and px < cap_px * 4:
                px += 0.25
            floors[key] = px
        return floors[key]


class HersheyText(_Floor):
    """OpenCV's built-in vector fonts: ASCII only (text is folded first); needs nothing installed."""

    name = "hershey"
    script = "latin"
    ellipsis = "..."

    def __init__(self):
        self.fold = ascii_text

    @property
    def cv2(self):
        return require("cv2")

    def _font(self, bold):
        return self.cv2.FONT_HERSHEY_DUPLEX if bold else self.cv2.FONT_HERSHEY_SIMPLEX

    def _scale(self, px, bold):
        base = self.cv2.getTextSize("Ag", self._font(bold), 1.0, 1)[0][1]
        scale = max(0.3, px / float(base))
        return scale, max(1, int(round(scale * (2.2 if bold else 1.5))))

    def width(self, text, px, bold=False):
        scale, thickness = self._scale(px, bold)
        return self.cv2.getTextSize(self.fold(text), self._font(bold), scale, thickness)[0][0]

    def line_height(self, px, bold=False):
        scale, thickness = self._scale(px, bold)
        return int(self.cv2.getTextSize("Ag", self._font(bold), scale, thickness)[0][1] * 1.45) + 1

    def ascent(self, px, bold=False):
        return int(self.line_height(px, bold) * 0.75)

    def cut(self, text):
        return text

    def cap_height(self, px, bold=False):
        """A capital's height at ``px`` (stroke included), as OpenCV sizes it."""
        return self._scale(px, bold)[0] * self.cv2.getTextSize("H", self._font(bold), 1.0, 1)[0][1]

    def ink_box(self, text, x, baseline, px, bold=False):
        """(x0, y0, x1, y1) of ``text`` drawn at ``x``, ``baseline``: OpenCV's own text box."""
        scale, thickness = self._scale(px, bold)
        (width, height), below = self.cv2.getTextSize(self.fold(text), self._font(bold), scale, thickness)
        return int(x), int(baseline) - height, int(x) + width, int(baseline) + below

    def draw(self, canvas, text, x, baseline, px, colour, bold=False):
        scale, thickness = self._scale(px, bold)
        self.cv2.putText(canvas, self.fold(text), (int(x), int(baseline)), self._font(bold), scale, colour,
                         thickness, self.cv2.LINE_AA)


class GlyphCache(object):
    """Least-recently-used alpha masks of rendered lines, keyed by (text, px, bold)."""

    def __init__(self, entries=CACHE_ENTRIES):
        self.entries = entries
        self.items = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key, render):
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
            self.hits += 1
            return item
        self.misses += 1
        item = render()
        self.items[key] = item
        if len(self.items) > self.entries:
            self.items.popitem(last=False)
        return item


class FreeTypeText(_Floor):
    """FreeType through Pillow: the script's font for its letters, a Latin font for the rest."""

    name = "freetype"
    ellipsis = "\u2026"

    def __init__(self, script, fonts, latin_fonts, pillow, layout=None, cache=None):
        self.script = script.name
        self._script = script
        self.fonts, self.latin_fonts = fonts, latin_fonts
        self.Image, self.ImageDraw, self.ImageFont = pillow
        self.layout = layout
        self.np = require("numpy")
        self.cache = cache if cache is not None else GlyphCache()
        self.widths = GlyphCache(CACHE_ENTRIES * 8)
        self._loaded, self._metric_cache = {}, {}

    @staticmethod
    def _size(px):
        return max(6, int(round(px * SIZE_PER_PX)))

    def _font(self, native, px, bold):
        size = self._size(px)
        path = (self.fonts if native else self.latin_fonts)[1 if bold else 0]
        key = (path, size)
        if key not in self._loaded:
            kwargs = {"layout_engine": self.layout} if self.layout is not None else {}
            self._loaded[key] = self.ImageFont.truetype(path, size, **kwargs)
        return self._loaded[key]

    def runs(self, text):
        """``text`` split into (native, run): the script's letters and the Latin/common text between."""
        runs, native = [], False
        for char in text:
            if self._script.name != "latin" and self._script.covers(char):
                here = True
            elif ("a" <= char.lower() <= "z") or (0xC0 <= ord(char) <= 0x24F):
                here = False
            else:  # digits, spaces, punctuation stay with the run they are in
                here = native if runs else False
            if runs and here == native:
                runs[-1][1].append(char)
            else:
                runs.append((here, [char]))
            native = here
        return [(here, "".join(chars)) for here, chars in runs]

    def _advance(self, font, text):
        if hasattr(font, "getlength"):
            return font.getlength(text)
        return font.getsize(text)[0]  # Pillow < 8 (JetPack 4.6's python3-pil 5.1)

    def _metrics(self, px, bold):
        key = (self._size(px), bool(bold))
        if key not in self._metric_cache:
            self._metric_cache[key] = self._font_metrics(px, bold)
        return self._metric_cache[key]

    def _font_metrics(self, px, bold):
        ascent = descent = 0
        for native in (False, True):
            font_ascent, font_descent = self._font(native, px, bold).getmetrics()
            ascent, descent = max(ascent, font_ascent), max(descent, font_descent)
        return ascent, descent

    def width(self, text, px, bold=False):
        """Advance width of ``text`` in pixels (shaped; kept, since wrapping asks for it again and again)."""
        return self.widths.get((text, self._size(px), bool(bold)), lambda: self._width(text, px, bold))

    def _width(self, text, px, bold):
        runs = self.runs(text)
        return int(round(sum(self._advance(self._font(native, px, bold), run) for native, run in runs)))

    def line_height(self, px, bold=False):
        # The fonts' ascent + descent leave room for the tallest stacked marks of both fonts at once;
        # lines 82% of that apart do not touch (measured on Noto and Lohit Devanagari/Bengali).
        ascent, descent = self._metrics(px, bold)
        return int((ascent + descent) * LINE_SPACING) + 1

    def ascent(self, px, bold=False):
        return self._metrics(px, bold)[0]

    def cut(self, text):
        return _cut_cluster(text)

    def mask(self, text, px, bold=False):
        """(alpha float32 HxWx1, baseline above its top, pen start right of its left): ``text`` rasterised
        once, cropped to its ink, then from the cache."""
        return self.cache.get((text, self._size(px), bool(bold)), lambda: self._render(text, px, bold))

    def _render(self, text, px, bold):
        ascent, descent = self._metrics(px, bold)
        pad = int(px * 0.3) + 2  # glyphs may overhang their advance (italic-like shapes, matras)
        width = max(1, self.width(text, px, bold) + 2 * pad)
        image = self.Image.new("L", (width, int(ascent + descent) + 2))
        draw = self.ImageDraw.Draw(image)
        x = pad
        for native, run in self.runs(text):
            font = self._font(native, px, bold)
            draw.text((x, ascent - font.getmetrics()[0]), run, font=font, fill=255,
                      **self._embolden(native, px, bold))
            x += self._advance(font, run)
        return _inked(self.np, self.np.asarray(image, dtype=self.np.uint8), ascent, pad)

    def _embolden(self, native, px, bold):
        """A stroke for bold text in a font without a bold face (Lohit), where Pillow has strokes (6.2+)."""
        fonts = self.fonts if native else self.latin_fonts
        if not bold or fonts[1] != fonts[0] or not _has_stroke(self.ImageDraw):
            return {}
        return {"stroke_width": max(1, int(round(px * 0.04))), "stroke_fill": 255}

    def cap_height(self, px, bold=False):
        """The inked rows (half-covered or more) of "H" and of the script's tall letter, the shorter."""
        letters = ["H"] + ([self._script.letter] if self._script.letter != "H" else [])
        return min(int((self.mask(letter, px, bold)[0].max(axis=1) >= 0.5).sum()) for letter in letters)

    def ink_box(self, text, x, baseline, px, bold=False):
        """(x0, y0, x1, y1) of ``text``'s ink drawn at ``x``, ``baseline``."""
        alpha, top, left = self.mask(text, px, bold)
        x0, y0 = int(x) - left, int(baseline) - top
        return x0, y0, x0 + alpha.shape[1], y0 + alpha.shape[0]

    def draw(self, canvas, text, x, baseline, px, colour, bold=False):
        if not text:
            return
        alpha, top, left = self.mask(text, px, bold)
        blend(self.np, canvas, alpha, int(x) - left, int(baseline) - top, colour)


def _has_stroke(image_draw):
    """Whether ImageDraw.text takes stroke_width (Pillow 6.2+; JetPack 4.6's 5.1 does not)."""
    import inspect

    return "stroke_width" in inspect.signature(image_draw.ImageDraw.text).parameters


def _inked(np, mask, ascent, pad):
    """The mask cropped to its inked rows and columns, as alpha, with the baseline and pen offsets."""
    rows, cols = np.nonzero(mask.max(axis=1))[0], np.nonzero(mask.max(axis=0))[0]
    if not len(rows):
        return np.zeros((1, 1, 1), np.float32), ascent, pad
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    alpha = mask[top:bottom, left:right].astype(np.float32) / 255.0
    return alpha.reshape(alpha.shape[0], alpha.shape[1], 1), ascent - top, pad - left


def blend(np, canvas, mask, x, y, colour):
    """Paint ``colour`` through the alpha ``mask`` (uint8, or float32 0..1 HxWx1) at (x, y), clipped."""
    height, width = canvas.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + mask.shape[1]), min(height, y + mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    alpha = mask[y0 - y:y1 - y, x0 - x:x1 - x]
    if alpha.dtype != np.float32:
        alpha = alpha.astype(np.float32).reshape(alpha.shape[0], alpha.shape[1], 1) / 255.0
    region = canvas[y0:y1, x0:x1]
    work = region.astype(np.float32)
    work += (np.asarray(colour, dtype=np.float32).reshape(1, 1, -1) - work) * alpha
    work += 0.5
    region[...] = work.astype(np.uint8)


def engine_for(language, find=None, pillow=None, warn=None):
    """The text engine that draws ``language``; ConfigError when it cannot be drawn here."""
    find, pillow = find or find_font, pillow or _pillow
    script = SCRIPTS[LANGUAGE_SCRIPTS.get(language, "latin")]
    modules = pillow()
    latin = find(SCRIPTS["latin"])
    if script.name == "latin":
        if modules is None or latin is None:
            (warn or _warn)("medkiosk: {} - drawing text with OpenCV's Hershey font (ASCII only). "
                            "Fix: {}".format(
                "Pillow is not installed" if modules is None else "no Latin font found",
                PILLOW_HINT if modules is None else "apt-get install " + SCRIPTS["latin"].packages))
            return HersheyText()
        return FreeTypeText(script, latin, latin, modules)
    if modules is None:
        raise ConfigError("language {}: needs Pillow to draw its {} script. Fix: {}".format(
            language, script.name.title(), PILLOW_HINT))
    fonts = find(script)
    if fonts is None:
        raise ConfigError("language {}: no {} font installed. Fix: apt-get install {}".format(
            language, script.name.title(), script.packages))
    if latin is None:
        latin = fonts
    if script.shaping and not has_raqm(modules[2]):
        raise ConfigError("language {}: Pillow cannot shape {} text without libraqm (letters would be drawn "
                          "in the wrong order). Fix: {}".format(language, script.name.title(), RAQM_HINT))
    layout = _raqm_layout(modules[2]) if script.shaping else None
    return FreeTypeText(script, fonts, latin, modules, layout=layout)


def _warn(line):
    sys.stderr.write(line + "\n")


_state = {"engine": None, "language": None}


def use(language):
    """The engine that draws ``language``, made once per language (ConfigError when it cannot be)."""
    if _state["language"] != language or _state["engine"] is None:
        _state["engine"] = engine_for(language)
        _state["language"] = language
    return _state["engine"]


def set_engine(engine, language):
    """Draw ``language`` with ``engine`` (benchmarks compare engines on the same screen)."""
    _state["engine"], _state["language"] = engine, language
    set_language(language)


def start(language):
    """At the start of the kiosk or the service: ``language``'s catalogue and, for the screen, its engine."""
    set_language(language)
    return use(language)
