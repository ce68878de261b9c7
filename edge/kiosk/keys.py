"""The kiosk's keys, one handler each (a table, no if/elif chain), and what they open lazily.

SPACE (or ENTER) freeze/live, M next module, F next image (import folder), S save case (with an optional
patient reference typed in ``edge.kiosk.entry``), E export the new cases to the USB stick
(``edge.usb_export``), H heatmap, C capture mode (when enabled), T technician box, P pairing,
Q/ESC quit (not in kiosk mode). A handler returns False to end the run. While a mode is open
(``Desk.mode``: the reference entry) every key goes to it.
"""

import os

from edge.console import printable
from edge.errors import MedkioskError, SourceError
from edge.i18n import N_, _
from edge.overlay import OverlayState, prediction_state

HEATMAP_MISSING = N_("Heatmap not available for this model")
CASE_SAVED = N_("Case saved {}")
CASE_SAVED_REF = N_("Case saved {} - ref {}")
EXPORT_NOT_CONFIGURED = N_("USB export is not configured")
# At the end of the run an export under way gets this long to finish (under systemd's
# TimeoutStopSec=20s). One cut short is safe: its cases stay new, and the root helper finishes or
# cleans up the stick on its own.
EXPORT_WAIT_S = 15.0
HEATMAP_ON = N_("Heatmap: where the model looked for its top finding - H to hide")
HEATMAP_OFF = N_("Heatmap hidden")


class Desk(object):
    """The case log, the USB importer and exporter, opened on first use and closed with the loop;
    ``mode``: the open entry mode (None: keys go to KEY_HANDLERS)."""

    def __init__(self, caselog_factory=None, importer_factory=None, exporter_factory=None):
        self.caselog_factory = caselog_factory
        self.importer_factory = importer_factory
        self.exporter_factory = exporter_factory
        self.caselog = None
        self.importer = None
        self.exporter = None
        self.export_job = None
        self.mode = None

    def open_caselog(self):
        if self.caselog is None:
            caselog = self.caselog_factory()
            caselog.open()
            self.caselog = caselog
        return self.caselog

    @property
    def unreadable(self):
        """How many files of the USB import folder could not be read (0 when never opened)."""
        return getattr(self.importer, "unreadable", 0) if self.importer is not None else 0

    def tick(self):
        """Once a frame: keep "Exporting..." on screen while an export runs."""
        if self.export_job is not None:
            self.export_job.keep_saying()

    def close(self):
        if self.export_job is not None:
            self.export_job.wait(EXPORT_WAIT_S)
        if self.caselog is not None:
            self.caselog.close()
        if self.importer is not None:
            self.importer.close()


def _forget_result(kiosk):
    kiosk.smoother.reset()
    kiosk.pipeline.drop()
    kiosk.screen.result = None


def toggle_freeze(kiosk):
    kiosk.smoother.reset()
    kiosk.pipeline.drop()
    if kiosk.freeze.active:
        kiosk.freeze.release()
        kiosk.screen.result = None
        kiosk.pipeline.resubmit()
        return
    if kiosk.screen.frame is None:
        kiosk.messages.say(_("Nothing to freeze - no image yet"))
        return
    _hold(kiosk, kiosk.screen.frame.copy(), kiosk.screen.name)


def _hold(kiosk, image, name=None):
    kiosk.freeze.hold(image, name)
    kiosk.screen.result = None
    kiosk.pipeline.resubmit()


def next_module(kiosk):
    """The next module; straight to the suggested one when the image was refused with a suggestion."""
    target = getattr(kiosk.current_result(), "suggested_module", None)
    _forget_result(kiosk)
    if not (target and kiosk.modules.select(target)):
        kiosk.modules.next()
    kiosk.pipeline.resubmit()
    if kiosk.freeze.active:
        kiosk.freeze.restamp()  # classify the frozen image with the new module
    kiosk.messages.say(_("Module: {}").format(_(kiosk.slot.title)))


def _step_source_image(kiosk):
    try:
        path = kiosk.source.next_image()
    except SourceError as exc:
        kiosk.messages.say(str(exc))
        return
    kiosk.pipeline.resubmit()
    if path is None:
        kiosk.messages.say(_("No images to show"))


def _next_import(desk):
    """The next image path of the USB import folder (the first F opens it and shows the first)."""
    if desk.importer is None:
        importer = desk.importer_factory()
        importer.open()
        desk.importer = importer
        return importer.current_path
    return desk.importer.next_image()


def next_image(kiosk):
    _forget_result(kiosk)
    if kiosk.source.steps_images:
        _step_source_image(kiosk)
        return
    desk = kiosk.desk
    if desk.importer_factory is None:
        kiosk.messages.say(_("No import folder configured"))
        return
    try:
        path = _next_import(desk)
    except SourceError as exc:
        desk.importer = None
        kiosk.messages.say(_("No USB images: {}").format(exc))
        return
    if path is None:
        kiosk.messages.say(desk.importer.notice or _("No images on the USB stick"))
        return
    _ok, image, _stamp = desk.importer.read()
    name = printable(os.path.basename(path))
    _hold(kiosk, image, name)
    kiosk.messages.say(_("Image {}").format(name))


def _case_record(kiosk, result, slot):
    record = dict(result.to_dict())
    record.update({"module": slot.module_id, "module_title": slot.title, "frozen": kiosk.freeze.active,
                   "source": kiosk.source.describe(), "state": prediction_state(result, OverlayState())})
    return record


def save_case(kiosk):
    """S: snapshot what is on screen and open the patient-reference entry (ENTER saves, ESC cancels)."""
    result = kiosk.current_result()
    frame = kiosk.freeze.frame if kiosk.freeze.active else kiosk.screen.frame
    if result is None or frame is None:
        kiosk.messages.say(_("Nothing to save yet"))
        return
    if kiosk.desk.caselog_factory is None:
        kiosk.messages.say(_("Case saving is not configured"))
        return
    from edge.kiosk.entry import ReferenceEntry, Snapshot

    slot = kiosk.slot
    snapshot = Snapshot(frame.copy(), result, slot, _case_record(kiosk, result, slot),
                        held=not kiosk.freeze.active)
    if snapshot.held:
        _hold(kiosk, snapshot.frame)  # the screen shows the image being saved, not the live camera
    kiosk.desk.mode = ReferenceEntry(snapshot, _save_snapshot, _entry_cancelled)


def _release_held(kiosk, snapshot):
    """Back to live after the entry, when S froze the view for it."""
    if snapshot.held and kiosk.freeze.active:
        toggle_freeze(kiosk)


def _entry_cancelled(kiosk, snapshot):
    from edge.kiosk.entry import CANCELLED

    _release_held(kiosk, snapshot)
    kiosk.messages.say(_(CANCELLED))


def _save_snapshot(kiosk, snapshot, reference):
    """ENTER in the entry: save the snapshot S took, with the reference typed (may be empty)."""
    from edge.caselog import CaseLogError

    _release_held(kiosk, snapshot)
    slot, result = snapshot.slot, snapshot.result
    info = slot.runner_info or {}
    try:
        case = kiosk.desk.open_caselog().save(
            snapshot.frame, snapshot.record, slot.module_id, bundle_id=slot.bundle.bundle_id,
            bundle_version=slot.bundle.version, bundle_sha256=slot.bundle.sha256,
            backend=info.get("describe") or result.backend, precision=info.get("precision"),
            patient_ref=reference or None)
    except CaseLogError as exc:
        kiosk.messages.say(str(exc).split(". Fix:")[0])
        kiosk.reporter.log("case not saved: {}".format(exc))
        return
    kiosk.cases_saved += 1
    if case.patient_ref:
        kiosk.messages.say(_(CASE_SAVED_REF).format(case.number, case.patient_ref))
    else:
        kiosk.messages.say(_(CASE_SAVED).format(case.number))
    # The journal gets the case number and id, never the patient reference.
    kiosk.reporter.line("[{}] case saved {} {} -> {}".format(kiosk.frames, case.number, case.uid, case.image))


def export_cases(kiosk):
    """E: the cases not exported yet, with their referral sheets, onto the USB stick (edge.usb_export),
    in a thread of its own (``edge.kiosk.export_job``)."""
    from edge.kiosk.export_job import BUSY, ExportJob, failure_line

    desk = kiosk.desk
    if desk.exporter_factory is None or desk.caselog_factory is None:
        kiosk.messages.say(_(EXPORT_NOT_CONFIGURED))
        return
    if desk.export_job is not None and not desk.export_job.done:
        kiosk.messages.say(_(BUSY))
        return
    try:
        if desk.exporter is None:
            desk.exporter = desk.exporter_factory(kiosk)
    except MedkioskError as exc:
        kiosk.messages.say(failure_line(exc))
        kiosk.reporter.log("USB export failed: {}".format(exc))
        return
    desk.export_job = ExportJob(desk.exporter, desk.caselog_factory, kiosk.messages,
                                kiosk.reporter.log).start()


def heatmap(kiosk):
    """H: show or hide where the model looked (bundles exported with a heatmap output only)."""
    bundle = kiosk.slot.bundle
    if bundle is None or not getattr(bundle, "heatmap", None):
        kiosk.show_heatmap = False
        kiosk.messages.say(_(HEATMAP_MISSING))
        return
    kiosk.show_heatmap = not kiosk.show_heatmap
    kiosk.messages.say(_(HEATMAP_ON) if kiosk.show_heatmap else _(HEATMAP_OFF))
def capture_mode(kiosk):
    """Capture mode (labelled photos for training, consent first): its own screens until ESC."""
    from edge.kiosk.capture_mode import run_capture

    return run_capture(kiosk)


def technician(kiosk):
    """T: the technician box (backend, provider, precision, fps, window, pairing) over the image."""
    kiosk.views.toggle_technician()


def pair_device(kiosk):
    """P: show a pairing code of the LAN service with its QR code; P again closes it. Switched off by
    the technician (``[serve] pairing_key = off``): one status line, no code, a line in the journal."""
    pairing = kiosk.views.pairing
    message = pairing.toggle()
    if message:
        kiosk.messages.say(message)
    if pairing.key_off:
        kiosk.reporter.log("pairing: key P pressed while switched off ([serve] pairing_key = off); "
                           "no code made")


def quit_kiosk(kiosk):
    if kiosk.kiosk_mode:
        kiosk.messages.say(_("Kiosk mode: the kiosk cannot be closed from the keyboard"))
        return True
    return False


KEY_HANDLERS = {
    "SPACE": toggle_freeze,
    "ENTER": toggle_freeze,
    "M": next_module,
    "F": next_image,
    "S": save_case,
    "E": export_cases,
    "H": heatmap,
    "C": capture_mode,
    "T": technician,
    "P": pair_device,
    "Q": quit_kiosk,
    "ESC": quit_kiosk,
}


def on_key(kiosk, key):
    """Run the key's handler (or the open mode's); False when it ends the run."""
    if kiosk.desk.mode is not None:
        kiosk.desk.mode.on_key(kiosk, key)
        return True
    handler = KEY_HANDLERS.get(key)
    if handler is None:
        return True
    return handler(kiosk) is not False
