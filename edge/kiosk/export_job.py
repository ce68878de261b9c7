"""E on the kiosk: the USB export in its own thread, so the screen (and the systemd watchdog) keep
running while the referral sheets are made and the helper copies them to the stick. E in capture
mode runs the photos' export the same way (``PhotoExportJob``).

The thread opens its own case log connection (SQLite connections stay in their thread); while it
runs, "Exporting to the USB stick..." stays on screen (said again whenever it fades), then its one
outcome line: "Safe to remove the USB stick - N case(s) exported to NAME", "No new cases to export",
or the failure (``failure_line``; the full message, with its fix, in the journal).
"""

import threading

from edge.errors import MedkioskError
from edge.i18n import N_, _

EXPORTING = N_("Exporting to the USB stick...")
BUSY = N_("Export running - wait for 'Safe to remove the USB stick'")
NOT_CONFIGURED = N_("USB export is not configured")  # the same words as edge.kiosk.keys says for E
UNEXPECTED = N_("USB export failed - the reason is in the journal")
# The helper's failure codes -> the line on the worker's screen (in the worker's language); the
# helper's own message, with its numbers and fix, goes to the journal.
SCREEN_LINES = {
    "no-stick": N_("No USB stick found"),
    "full": N_("USB stick full - nothing was exported"),
    "read-only": N_("USB stick is write-protected or damaged"),
    "busy": BUSY,
    "unit-full": N_("The unit's disk is too full to prepare the export"),
}


def failure_line(exc):
    """One line for the screen: the failure code's own line, else the problem part of the message."""
    line = SCREEN_LINES.get(getattr(exc, "code", None))
    if line is not None:
        return _(line)
    return str(exc).split(" Fix:")[0].rstrip(".")


class ExportJob(object):
    """One export: ``start()``, then ``outcome`` ("ok"/"failed") and ``line`` once ``done``."""

    JOURNAL = "USB export"  # how its journal lines start
    WHAT = "case(s)"

    def __init__(self, exporter, caselog_factory, messages, log):
        self.exporter = exporter
        self.caselog_factory = caselog_factory
        self.messages = messages
        self.log = log
        self.outcome = None
        self.line = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medkiosk-usb-export", daemon=True)

    @property
    def done(self):
        return self._finished.is_set()

    def start(self):
        self.messages.say(_(EXPORTING))
        self._thread.start()
        return self

    def _export(self):
        """The export itself, in the job's thread: an object with ``count``, ``name``, ``message()``."""
        caselog = self.caselog_factory()
        caselog.open()
        try:
            return self.exporter.export_new(caselog)
        finally:
            caselog.close()

    def _run(self):
        try:
            done = self._export()
        except MedkioskError as exc:
            self.outcome, self.line = "failed", failure_line(exc)
            self.log("{} failed: {}".format(self.JOURNAL, exc))
        except Exception as exc:  # a bug, not a stick problem: said on screen, named in the journal
            self.outcome, self.line = "failed", _(UNEXPECTED)
            self.log("{} failed: {}: {}. Fix: report this with the journal".format(
                self.JOURNAL, type(exc).__name__, exc))
        else:
            self.outcome, self.line = "ok", done.message()
            self.log("{}: {} {} to {}".format(self.JOURNAL, done.count, self.WHAT, done.name or "-"))
        finally:
            self._finished.set()
        self.messages.say(self.line)

    def keep_saying(self):
        """Called once a frame: repeat "Exporting..." while it runs (messages fade after 3 s)."""
        if not self.done and self.messages.current() is None:
            self.messages.say(_(EXPORTING))

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return self.done


class PhotoExportJob(ExportJob):
    """E in capture mode: every photo of the capture store onto the stick (edge.capture_usb), with the
    same screen lines; the photos are recorded as exported only after the root helper's OK."""

    JOURNAL = "capture: USB export"
    WHAT = "photo(s)"

    def __init__(self, exporter, store, labels, messages, log):
        super().__init__(exporter, None, messages, log)
        self.store = store
        self.labels = list(labels)

    def _export(self):
        from edge.capture_usb import export_usb

        return export_usb(self.store, self.exporter, self.labels)
