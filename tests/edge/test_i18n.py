"""The worker's language: every marked string and every shipped module's screen text is in each
catalogue, translated and with the same placeholders; each shipped .mo says what its .po says; the
config refuses a language that is not installed; the screen and selftest speak the chosen language.
"""

import ast
import gettext
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge import i18n
from edge.errors import ConfigError
from tests.edge.po_files import messages, read_po

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCALE = os.path.join(ROOT, "edge", "locale")
POT = os.path.join(LOCALE, "medkiosk.pot")
SHIPPED = ("en", "hi", "bn")
MARKERS = {"_": 1, "N_": 1, "ngettext": 2}


def _po(language):
    return os.path.join(LOCALE, language, "LC_MESSAGES", "medkiosk.po")


def _literal(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # Python 3.8+
        return node.value
    if type(node).__name__ == "Str":  # Python 3.6/3.7
        return node.s
    return None


def marked_strings():
    """{text: "file:line"} of every _("..."), N_("...") and ngettext("...", "...", n) in edge/."""
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "edge", "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS:
                for argument in node.args[:MARKERS[node.func.id]]:
                    text = _literal(argument)
                    if text is not None:
                        found.setdefault(text, "{}:{}".format(os.path.relpath(path, ROOT), node.lineno))
    return found


def manifest_strings():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "manifest.json"))):
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        found.append(manifest["module"]["title"])
        found.extend(manifest["model"].get("display_names") or manifest["model"]["classes"])
        message = (manifest["model"].get("input_check") or {}).get("message")
        if message:
            found.append(message)
    return found


def test_every_marked_string_and_every_module_text_is_in_the_template():
    template = messages(POT)
    plurals = {entry.msgid_plural for entry in template.values() if entry.msgid_plural}
    missing = {text: where for text, where in marked_strings().items()
               if text not in template and text not in plurals}
    assert not missing, "not in edge/locale/medkiosk.pot (run `make i18n`): {}".format(missing)
    absent = [text for text in manifest_strings() if text not in template]
    assert not absent, "module texts not in the catalogue (run `make i18n`): {}".format(absent)
    assert len(marked_strings()) > 50  # the scan itself works


@pytest.mark.parametrize("language", SHIPPED)
def test_each_catalogue_translates_every_message_with_the_same_placeholders(language):
    template, catalogue = messages(POT), messages(_po(language))
    untranslated = [msgid for msgid in template if msgid not in catalogue or not catalogue[msgid].translated]
    assert not untranslated, "{}: untranslated or fuzzy: {}".format(language, untranslated)
    for msgid, entry in catalogue.items():
        for text in entry.msgstr.values():
            assert text.count("{}") == msgid.count("{}"), (language, msgid, text)
    header = read_po(_po(language))[0].msgstr[0]
    assert "Language: {}".format(language) in header and "charset=UTF-8" in header


@pytest.mark.parametrize("language", ("hi", "bn"))
def test_the_translations_are_in_the_language_script(language):
    block = {"hi": (0x0900, 0x097F), "bn": (0x0980, 0x09FF)}[language]
    catalogue = messages(_po(language))
    for msgid in ("Decision support only - not a diagnosis", "Uncertain - retake the image or refer",
                  "Not a chest X-ray \u2014 check the image or the module", "Pneumonia", "No finding"):
        translated = catalogue[msgid].msgstr[0]
        assert sum(block[0] <= ord(c) <= block[1] for c in translated) >= 3, (msgid, translated)


@pytest.mark.parametrize("language", SHIPPED)
def test_each_shipped_mo_matches_its_po(language):
    """A .po edited without `make i18n` leaves a stale .mo: the kiosk would show the old text."""
    with open(os.path.join(LOCALE, language, "LC_MESSAGES", "medkiosk.mo"), "rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for msgid, entry in messages(_po(language)).items():
        if entry.msgid_plural:
            assert compiled.ngettext(msgid, entry.msgid_plural, 1) == entry.msgstr[0], msgid
            assert compiled.ngettext(msgid, entry.msgid_plural, 5) == entry.msgstr[1], msgid
        else:
            assert compiled.gettext(msgid) == entry.msgstr[0], (language, msgid)
    assert len(compiled._catalog) - 1 == sum(len(e.msgstr) for e in messages(_po(language)).values())


@pytest.mark.skipif(not shutil.which("xgettext"), reason="apt-get install gettext")
def test_xgettext_extracts_what_the_template_holds(tmp_path):
    """The standard tool chain agrees: re-extracting gives the shipped template's messages."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import i18n as tool
    finally:
        sys.path.pop(0)
    pot = str(tmp_path / "fresh.pot")
    tool.extract(pot)
    assert set(messages(pot)) == set(messages(POT)), "edge/locale/medkiosk.pot is stale: run `make i18n`"


def test_installed_languages_are_the_compiled_catalogues(tmp_path):
    assert set(SHIPPED) <= set(i18n.installed_languages())
    assert i18n.installed_languages(str(tmp_path)) == ["en"]
    (tmp_path / "xx" / "LC_MESSAGES").mkdir(parents=True)
    assert i18n.installed_languages(str(tmp_path)) == ["en"]  # a folder without a .mo is not a language


def test_the_config_chooses_a_language_and_refuses_an_unknown_one(tmp_path):
    from edge.config import load_config

    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\nlanguage = HI\n")
    assert load_config(str(path)).kiosk["language"] == "hi"
    assert load_config(use_default_path=False).kiosk["language"] == "en"
    path.write_text("[kiosk]\nlanguage = fr\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    message = str(error.value)
    assert "[kiosk] language" in message and "'fr' is not installed" in message
    assert "bn (Bengali)" in message and "en (English)" in message and "hi (Hindi)" in message


def test_set_language_switches_every_later_translation():
    from edge.i18n import _, ngettext

    try:
        i18n.set_language("hi")
        assert _("Pneumonia") == "निमोनिया"
        assert ngettext("FAIL ({} failed check)", "FAIL ({} failed checks)", 2).startswith("विफल")
        i18n.set_language("en")
        assert _("Pneumonia") == "Pneumonia"
    finally:
        i18n.set_language("en")


def _screen(language, size=(800, 480)):
    from edge.overlay import OverlayState, draw_overlay
    from edge.text import start
    from tests.edge.test_overlay import CONFIDENT, _prediction, textured

    start(language)
    try:
        state = OverlayState(module_title="Chest X-ray (adult)", size=size)
        return draw_overlay(textured(), _prediction(CONFIDENT), state)
    finally:
        start("en")


def test_the_screen_is_drawn_in_the_chosen_language():
    pytest.importorskip("PIL", reason="pip install 'Pillow==8.4.0' or apt-get install python3-pil")
    from edge import text
    from edge.overlay import Layout

    if not text.find_font(text.SCRIPTS["devanagari"]):
        pytest.skip("apt-get install fonts-noto-core (or fonts-lohit-deva)")
    english, hindi = _screen("en"), _screen("hi")
    layout = Layout((800, 480))
    for rect in (layout.footer, layout.title, layout.top3):
        assert np.abs(rect.crop(english).astype(int) - rect.crop(hindi).astype(int)).sum() > 0
    assert np.array_equal(layout.image.crop(english)[:200], layout.image.crop(hindi)[:200])
    footer = layout.footer.crop(hindi).astype(int)
    assert (np.abs(footer - [0, 220, 255]).sum(axis=2) < 60).sum() > 50  # the disclaimer, in yellow


def test_the_renderer_redraws_its_panel_when_the_language_changes():
    pytest.importorskip("PIL", reason="pip install 'Pillow==8.4.0' or apt-get install python3-pil")
    from edge import text
    from edge.overlay import OverlayRenderer, OverlayState
    from tests.edge.test_overlay import CONFIDENT, _prediction, textured

    if not text.find_font(text.SCRIPTS["bengali"]):
        pytest.skip("apt-get install fonts-noto-core (or fonts-lohit-beng-bengali)")
    renderer, frame, result = OverlayRenderer(), textured(), _prediction(CONFIDENT)
    state = OverlayState(module_title="Chest X-ray (adult)", size=(800, 480))
    try:
        renderer.draw(frame, result, state)
        renderer.draw(frame, result, state)
        assert renderer.panel_draws == 1
        text.start("bn")
        renderer.draw(frame, result, state)
        assert renderer.panel_draws == 2
    finally:
        text.start("en")


def _selftest(tmp_path, language, static=False):
    config = tmp_path / "medkiosk.conf"
    keys = os.path.join(ROOT, "config", "trusted_keys")
    config.write_text("[kiosk]\nmodels_dir = {}\nmodules = chest, pediatric-pneumonia\noptional_modules = \n"
                      "language = {}\n\n[security]\ntrusted_keys = {}\n".format(
                          os.path.join(ROOT, "models"), language, keys))
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "edge", "selftest", "--no-camera", "--no-display", "--config",
               str(config)]
    if static:
        command.append("--static")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, env=env, cwd=ROOT)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_selftest_speaks_the_configured_language_and_checks_its_font(tmp_path):
    pytest.importorskip("PIL", reason="pip install 'Pillow==8.4.0' or apt-get install python3-pil")
    from edge import text

    if not text.find_font(text.SCRIPTS["devanagari"]):
        pytest.skip("apt-get install fonts-noto-core (or fonts-lohit-deva)")
    status, out, err = _selftest(tmp_path, "hi")
    language_line = [line for line in out.splitlines() if "language" in line]
    assert language_line and "[PASS]" in language_line[0], out + err
    assert "hi (Hindi), font /usr/share/fonts/" in language_line[0]
    assert "कॉन्फ़िगरेशन" in out  # "Configuration"
    result = out.strip().splitlines()[-1]
    assert result.startswith("परिणाम: "), out  # "RESULT: "
    assert status == (0 if "सफल" in result else 1)
    status, out, err = _selftest(tmp_path, "bn", static=True)  # what jetson_setup.sh --dry-run predicts with
    assert "[PASS] language: bn (Bengali): catalogue installed" in out and status == 0, out + err
    assert "apt-get" not in out and not err


def test_selftest_fails_a_language_whose_font_is_missing(monkeypatch):
    pytest.importorskip("PIL", reason="pip install 'Pillow==8.4.0' or apt-get install python3-pil")
    from edge import text
    from edge.commands.selftest import language_check

    monkeypatch.setattr(text, "find_font", lambda script: None)
    monkeypatch.setitem(text._state, "engine", None)
    try:
        check = language_check("hi")
        assert check.failed and "apt-get install fonts-lohit-deva" in check.detail
    finally:
        i18n.set_language("en")
