"""A small reader of gettext .po/.pot files (enough for the catalogue tests; no polib on the Nano)."""

import ast


class Entry(object):
    def __init__(self):
        self.comments = []
        self.flags = set()
        self.msgid = None
        self.msgid_plural = None
        self.msgstr = {}  # index -> text (0 for singular entries)

    @property
    def fuzzy(self):
        return "fuzzy" in self.flags

    @property
    def translated(self):
        return bool(self.msgstr) and all(self.msgstr.values()) and not self.fuzzy


def _unquote(text):
    return ast.literal_eval(text.strip())  # "..." with C escapes, which Python's literal reads alike


def read_po(path):
    """[Entry] of ``path``, header (msgid "") included."""
    entries, entry, field = [], Entry(), None
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for line in lines + [""]:
        if not line.strip():
            if entry.msgid is not None:
                entries.append(entry)
            entry, field = Entry(), None
        elif line.startswith("#,"):
            entry.flags.update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#~"):
            continue  # obsolete entries are not part of the catalogue
        elif line.startswith("#"):
            entry.comments.append(line)
        elif line.startswith("msgid_plural "):
            entry.msgid_plural, field = _unquote(line[13:]), "msgid_plural"
        elif line.startswith("msgid "):
            entry.msgid, field = _unquote(line[6:]), "msgid"
        elif line.startswith("msgstr["):
            index = int(line[7:line.index("]")])
            entry.msgstr[index], field = _unquote(line[line.index("]") + 1:]), index
        elif line.startswith("msgstr "):
            entry.msgstr[0], field = _unquote(line[7:]), 0
        elif line.startswith('"'):
            if field in ("msgid", "msgid_plural"):
                setattr(entry, field, getattr(entry, field) + _unquote(line))
            else:
                entry.msgstr[field] += _unquote(line)
    return entries


def messages(path):
    """{msgid: Entry} without the header."""
    return {entry.msgid: entry for entry in read_po(path) if entry.msgid}
