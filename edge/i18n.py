"""The worker's language: gettext catalogues under ``edge/locale/<lang>/LC_MESSAGES/medkiosk.mo``.

``_("text")`` translates at call time into the active language (English when no catalogue matches,
gettext's own fallback). Module-level constants are marked with ``N_("text")`` (no translation at
import, when the language is not chosen yet) and passed through ``_()`` where they are shown.
``set_language("hi")`` is called once by the kiosk and the LAN service from the config.
"""

import gettext
import os

DOMAIN = "medkiosk"
LOCALE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
DEFAULT_LANGUAGE = "en"
# The languages a catalogue ships for (English is the source text and also has one, for completeness).
LANGUAGE_NAMES = {"en": "English", "hi": "Hindi", "bn": "Bengali"}

_state = {"language": DEFAULT_LANGUAGE, "catalogue": gettext.NullTranslations()}


def load_catalogue(language, localedir=LOCALE_DIR):
    """The translations for ``language`` (gettext.NullTranslations for English or none installed)."""
    return gettext.translation(DOMAIN, localedir=localedir, languages=[language], fallback=True)


def installed_languages(localedir=LOCALE_DIR):
    """English and every language with a compiled catalogue under ``localedir``, sorted."""
    found = {DEFAULT_LANGUAGE}
    if os.path.isdir(localedir):
        for name in os.listdir(localedir):
            if os.path.isfile(os.path.join(localedir, name, "LC_MESSAGES", DOMAIN + ".mo")):
                found.add(name)
    return sorted(found)


def set_language(language, localedir=LOCALE_DIR):
    """Make ``language`` the active one for every later ``_()`` call; returns the catalogue."""
    catalogue = load_catalogue(language, localedir)
    _state["language"] = language
    _state["catalogue"] = catalogue
    return catalogue


def language():
    return _state["language"]


def _(message):
    """``message`` in the active language."""
    return _state["catalogue"].gettext(message)


def ngettext(singular, plural, count):
    """``singular`` or ``plural`` for ``count``, in the active language (its own plural rule)."""
    return _state["catalogue"].ngettext(singular, plural, count)


def N_(message):
    """Mark ``message`` for the catalogue without translating it now (module-level constants)."""
    return message
