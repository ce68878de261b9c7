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

_state = {"language": DEFAULT_LANGUAGE, "catalogue": gettext.NullTranslations()}


def load_catalogue(language, localedir=LOCALE_DIR):
    """The translations for ``language`` (gettext.NullTranslations for English or none installed)."""
    return gettext.translation(DOMAIN, localedir=localedir, languages=[language], fallback=True)


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


def N_(message):
    """Mark ``message`` for the catalogue without translating it now (module-level constants)."""
    return message
