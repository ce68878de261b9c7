"""`make i18n`: re-extract the marked strings, merge them into each language's .po, compile the .mo.

Sources: every ``_("...")``, ``N_("...")`` and ``ngettext("...", "...", n)`` in edge/ (xgettext), and
what the shipped model bundles show on the screen (models/*/manifest.json: the module title, the
finding display names, the input-check message), keyed on the English text. Then, per language in
edge/locale/: msgmerge (new strings appear untranslated: the catalogue test fails until a translator
fills them), and msgfmt --check to the .mo the package ships. Needs GNU gettext (apt-get install gettext).
References name files, not lines, so that an edit elsewhere in a file leaves the catalogues alone.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCALE = os.path.join(ROOT, "edge", "locale")
POT = os.path.join(LOCALE, "medkiosk.pot")
LANGUAGES = ("en", "hi", "bn")
KEYWORDS = ("_", "N_", "ngettext:1,2")


def python_sources():
    files = glob.glob(os.path.join(ROOT, "edge", "**", "*.py"), recursive=True)
    return sorted(os.path.relpath(path, ROOT) for path in files)


def manifest_strings():
    """[(text, where)] that the shipped bundles put on the screen."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "manifest.json"))):
        where = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        model = manifest.get("model", {})
        found.append((manifest["module"]["title"], where + " (module title)"))
        found.extend((name, where + " (finding)") for name in model.get("display_names") or model["classes"])
        check = model.get("input_check") or {}
        if check.get("message"):
            found.append((check["message"], where + " (input check)"))
    return found


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_manifest_pot(path):
    entries = {}
    for text, where in manifest_strings():
        entries.setdefault(text, []).append(where)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n')
        for text, places in entries.items():
            handle.write("".join("#. {}\n".format(place) for place in places))
            handle.write("msgid {}\nmsgstr \"\"\n\n".format(_quote(text)))


def run(*command):
    subprocess.run(command, check=True, cwd=ROOT)


def extract(pot=POT):
    with tempfile.TemporaryDirectory() as tmp:
        code_pot, manifest_pot = os.path.join(tmp, "code.pot"), os.path.join(tmp, "manifests.pot")
        run("xgettext", "--language=Python", "--from-code=UTF-8", "--package-name=medkiosk",
            "--msgid-bugs-address=medkiosk maintainers", "--add-comments=Translators:", "--sort-by-file",
            "--add-location=file",
            *["--keyword=" + k for k in KEYWORDS], "--output=" + code_pot, *python_sources())
        write_manifest_pot(manifest_pot)
        fresh = os.path.join(tmp, "medkiosk.pot")
        run("msgcat", "--use-first", "--sort-by-file", "--add-location=file", "--output-file=" + fresh,
            code_pot, manifest_pot)
        if _content(fresh) != _content(pot):  # only the date changed: keep the file (and the .po headers)
            shutil.copyfile(fresh, pot)


def _content(path):
    """The template without its creation date, or None when there is none."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle if not line.startswith('"POT-Creation-Date:')]


def update(language):
    folder = os.path.join(LOCALE, language, "LC_MESSAGES")
    os.makedirs(folder, exist_ok=True)
    po, mo = os.path.join(folder, "medkiosk.po"), os.path.join(folder, "medkiosk.mo")
    if os.path.isfile(po):
        run("msgmerge", "--quiet", "--update", "--backup=none", "--no-fuzzy-matching", "--add-location=file",
            po, POT)
    else:  # msginit fills an English catalogue with the English text itself
        run("msginit", "--no-translator", "--locale=" + language, "--input=" + POT, "--output-file=" + po)
    run("msgfmt", "--check", "--output-file=" + mo, po)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] != ["--compile-only"]:
            extract()
        for language in LANGUAGES:
            update(language)
    except FileNotFoundError as exc:
        print("i18n: {} not found. Fix: apt-get install gettext".format(exc.filename), file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print("i18n: {} failed (exit {}): see its message above. Fix: correct the .po file it names".format(
            exc.cmd[0], exc.returncode), file=sys.stderr)
        return 1
    print("i18n: {} current, {} merged and compiled".format(os.path.relpath(POT, ROOT), ", ".join(LANGUAGES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
