"""edge.text: Devanagari and Bengali drawn with the real Debian fonts through FreeType (RAQM shaping),
the Hershey fallback for English, and every refusal (no Pillow, no font, no libraqm) naming its fix.

Needs Pillow and the Debian fonts (apt-get install fonts-noto-core or fonts-lohit-deva
fonts-lohit-beng-bengali); skipped, saying so, where they are absent (the JetPack 4.6 set has no
Pillow unless the Makefile pins it).
"""

import os

import numpy as np
import pytest

from edge import text
from edge.errors import ConfigError
from edge.i18n import set_language

PIL = pytest.importorskip("PIL", reason="pip install 'Pillow==8.4.0' (3.6); apt-get install python3-pil")
DEVANAGARI_FONT = text.find_font(text.SCRIPTS["devanagari"])
BENGALI_FONT = text.find_font(text.SCRIPTS["bengali"])
needs_fonts = pytest.mark.skipif(
    not (DEVANAGARI_FONT and BENGALI_FONT),
    reason="apt-get install fonts-noto-core (or fonts-lohit-deva fonts-lohit-beng-bengali)")


@pytest.fixture(autouse=True)
def english_afterwards():
    yield
    text.start("en")


def _engine(language):
    return text.engine_for(language)


def _ink(mask):
    """The mask cropped to its inked pixels (comparable across different widths)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:  # the engine's cached alpha (0..1, HxWx1)
        mask = (mask[:, :, 0] * 255).astype(np.uint8)
    rows, cols = np.nonzero(mask > 64)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _drawn(engine, font, line):
    image = engine.Image.new("L", (200, 100))
    engine.ImageDraw.Draw(image).text((10, 10), line, font=font, fill=255)
    return np.asarray(image)


@needs_fonts
def test_the_real_debian_fonts_are_found():
    for fonts in (DEVANAGARI_FONT, BENGALI_FONT):
        assert fonts[0].startswith("/usr/share/fonts/") and fonts[0].endswith(".ttf")
    engine = _engine("hi")
    assert engine.name == "freetype" and engine.fonts == DEVANAGARI_FONT
    assert engine.layout is not None  # RAQM: shaped, not drawn letter by letter


@needs_fonts
@pytest.mark.parametrize("language, word", [("hi", "निमोनिया"),
                                            ("bn", "নিউমোনিয়া")])
def test_the_script_is_drawn_as_letters_not_as_missing_glyph_boxes(language, word):
    engine = _engine(language)
    native = engine._font(True, 40, False)
    # The same font asked for letters it lacks (Thai) draws its .notdef box: that is the tofu to avoid.
    tofu = _ink(_drawn(engine, native, "\u0e01"))
    glyphs = [engine.mask(char, 40)[0] for char in word if not char.isspace()]
    for glyph in glyphs:
        inked = _ink(glyph)
        same_shape = inked.shape == tofu.shape and np.abs(inked.astype(int) - tofu.astype(int)).mean() < 8
        assert not same_shape
    whole = _ink(engine.mask(word, 40)[0])
    assert whole.shape[1] > 3 * tofu.shape[1] // 2  # a real word, wider than one box


@needs_fonts
def test_vowel_signs_are_shaped_before_their_consonant():
    """'कि' (ka + i-sign): RAQM puts the i-sign to the left of ka; letter-by-letter layout does not."""
    shaped = _engine("hi")
    ImageFont = shaped.ImageFont
    basic_layout = getattr(getattr(ImageFont, "Layout", None), "BASIC", None)
    if basic_layout is None:
        basic_layout = ImageFont.LAYOUT_BASIC
    basic = text.FreeTypeText(text.SCRIPTS["devanagari"], shaped.fonts, shaped.latin_fonts,
                              (shaped.Image, shaped.ImageDraw, ImageFont), layout=basic_layout)
    ki = "कि"
    assert not np.array_equal(_ink(shaped.mask(ki, 40)[0]), _ink(basic.mask(ki, 40)[0]))


@needs_fonts
def test_latin_inside_hindi_is_drawn_with_the_latin_font():
    engine = _engine("hi")
    runs = engine.runs("SPACE रोकें  M मॉड्यूल 100%")
    assert [native for native, _run in runs] == [False, True, False, True]
    assert runs[0][1] == "SPACE " and runs[-1][1].endswith("100%")


@needs_fonts
def test_drawing_paints_the_colour_and_the_cache_makes_it_identical():
    engine = _engine("hi")
    canvas = np.zeros((80, 400, 3), np.uint8)
    engine.draw(canvas, "केवल निर्णय", 10, 50, 30, (0, 220, 255))
    assert (np.abs(canvas.astype(int) - [0, 220, 255]).sum(axis=2) < 30).sum() > 100
    misses = engine.cache.misses
    again = np.zeros_like(canvas)
    engine.draw(again, "केवल निर्णय", 10, 50, 30, (0, 220, 255))
    assert engine.cache.misses == misses and engine.cache.hits >= 1
    assert np.array_equal(canvas, again)


def test_the_glyph_cache_forgets_the_least_recently_used():
    cache = text.GlyphCache(entries=2)
    for key in ("a", "b", "a", "c"):
        cache.get(key, key.upper)
    assert list(cache.items) == ["a", "c"] and cache.hits == 1 and cache.misses == 3


def test_drawing_off_the_canvas_is_clipped():
    canvas = np.zeros((10, 10, 3), np.uint8)
    mask = np.full((6, 6), 255, np.uint8)
    text.blend(np, canvas, mask, 7, -3, (255, 0, 0))
    assert canvas[:3, 7:, 0].min() == 255 and canvas[3:, :, 0].max() == 0 and canvas[:, :7, 0].max() == 0
    text.blend(np, canvas, mask, 20, 20, (0, 255, 0))  # entirely outside: nothing, no error
    assert canvas[:, :, 1].max() == 0


def test_english_without_a_font_falls_back_to_hershey_and_says_so_once():
    said = []
    engine = text.engine_for("en", find=lambda script: None, warn=said.append)
    assert engine.name == "hershey" and len(said) == 1
    assert "Hershey" in said[0] and "apt-get install fonts-dejavu-core" in said[0]
    assert engine.fold("Ur\u00e9mie \u2014 ok") == "Uremie - ok"
    canvas = np.zeros((40, 200, 3), np.uint8)
    engine.draw(canvas, "Pneumonia", 2, 30, 20, (255, 255, 255))
    assert canvas.max() > 200


def test_english_without_pillow_falls_back_to_hershey():
    said = []
    assert text.engine_for("en", pillow=lambda: None, warn=said.append).name == "hershey"
    assert "Pillow" in said[0]


def test_hindi_without_its_font_is_a_config_error_naming_the_package():
    with pytest.raises(ConfigError) as error:
        text.engine_for("hi", find=lambda script: None)
    assert "no Devanagari font" in str(error.value) and "apt-get install fonts-lohit-deva" in str(error.value)
    with pytest.raises(ConfigError) as error:
        text.engine_for("bn", find=lambda script: None)
    assert "apt-get install fonts-lohit-beng-bengali" in str(error.value)


def test_hindi_without_pillow_is_a_config_error():
    with pytest.raises(ConfigError, match="needs Pillow"):
        text.engine_for("hi", pillow=lambda: None)


@needs_fonts
def test_hindi_without_libraqm_is_a_config_error(monkeypatch):
    # Faked: this machine's Pillow has libraqm; a JetPack unit without the libraqm0 package does not.
    monkeypatch.setattr(text, "has_raqm", lambda image_font: False)
    with pytest.raises(ConfigError, match="apt-get install libraqm0"):
        text.engine_for("hi")


def test_fontconfig_finds_a_font_when_no_known_path_exists():
    found = text.find_font(text.SCRIPTS["devanagari"], exists=lambda path: False,
                           fc_list=lambda lang: ["/x/Other-Deva.ttf"] if lang == "hi" else [])
    assert found == ("/x/Other-Deva.ttf", "/x/Other-Deva.ttf")
    assert text.find_font(text.SCRIPTS["bengali"], exists=lambda path: False, fc_list=lambda lang: []) is None


@needs_fonts
def test_fc_list_is_asked_for_the_language():
    files = text._fc_list("hi")
    assert any("Devanagari" in path for path in files)


@needs_fonts
def test_start_sets_the_catalogue_and_the_engine():
    engine = text.start("hi")
    from edge.i18n import _, language

    assert language() == "hi" and engine.script == "devanagari"
    assert _("Decision support only - not a diagnosis") != "Decision support only - not a diagnosis"
    set_language("en")


LOHIT = "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf"


@pytest.mark.skipif(not os.path.isfile(LOHIT), reason="apt-get install fonts-lohit-deva")
def test_bold_in_a_font_without_a_bold_face_is_stroked_where_pillow_can():
    """Lohit (what a JetPack unit installs) has no bold face: banners are stroked to stay bold."""
    shaped = _engine("hi")
    lohit = text.FreeTypeText(text.SCRIPTS["devanagari"], (LOHIT, LOHIT), shaped.latin_fonts,
                              (shaped.Image, shaped.ImageDraw, shaped.ImageFont), layout=shaped.layout)
    word = "अनिश्चित"
    regular, bold = lohit.mask(word, 30)[0], lohit.mask(word, 30, bold=True)[0]
    if text._has_stroke(shaped.ImageDraw):
        assert bold.sum() > 1.2 * regular.sum()
    else:  # Pillow < 6.2 (JetPack 4.6's python3-pil 5.1): the regular face
        assert np.array_equal(bold, regular)
