"""The kiosk's keys, one handler each (a table, no if/elif chain), and what they open lazily.

SPACE freeze/live, M next module, F next image (import folder), S save case, H heatmap,
Q/ESC quit (not in kiosk mode). A handler returns False to end the run.
"""

import os

from edge.console import printable
from edge.errors import SourceError
from edge.i18n import N_, _
from edge.overlay import OverlayState, prediction_state

HEATMAP_MISSING = N_("Heatmap not available for this model")
HEATMAP_ON = N_("Heatmap: where the model looked for its top finding - H to hide")
HEATMAP_OFF = N_("Heatmap hidden")


class Desk(object):
    """The case log and the USB importer, opened on first use and closed with the loop."""

    def __init__(self, caselog_factory=None, importer_factory=None):
        self.caselog_factory = caselog_factory
        self.importer_factory = importer_factory
        self.caselog = None
        self.importer = None

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

    def close(self):
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
        kiosk.messages.say("Nothing to freeze - no image yet")
        return
    _hold(kiosk, kiosk.screen.frame.copy())


def _hold(kiosk, image):
    kiosk.freeze.hold(image)
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
    kiosk.messages.say("Module: {}".format(kiosk.slot.title))


def _step_source_image(kiosk):
    try:
        path = kiosk.source.next_image()
    except SourceError as exc:
        kiosk.messages.say(str(exc))
        return
    kiosk.pipeline.resubmit()
    if path is None:
        kiosk.messages.say("No images to show")


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
        kiosk.messages.say("No import folder configured")
        return
    try:
        path = _next_import(desk)
    except SourceError as exc:
        desk.importer = None
        kiosk.messages.say("No USB images: {}".format(exc))
        return
    if path is None:
        kiosk.messages.say(desk.importer.notice or "No images on the USB stick")
        return
    _ok, image, _stamp = desk.importer.read()
    _hold(kiosk, image)
    kiosk.messages.say("Image {}".format(printable(os.path.basename(path))))


def _case_record(kiosk, result, slot):
    record = dict(result.to_dict())
    record.update({"module": slot.module_id, "module_title": slot.title, "frozen": kiosk.freeze.active,
                   "source": kiosk.source.describe(), "state": prediction_state(result, OverlayState())})
    return record


def save_case(kiosk):
    result = kiosk.current_result()
    frame = kiosk.freeze.frame if kiosk.freeze.active else kiosk.screen.frame
    if result is None or frame is None:
        kiosk.messages.say("Nothing to save yet")
        return
    if kiosk.desk.caselog_factory is None:
        kiosk.messages.say("Case saving is not configured")
        return
    from edge.caselog import CaseLogError

    slot = kiosk.slot
    info = slot.runner_info or {}
    try:
        case = kiosk.desk.open_caselog().save(
            frame, _case_record(kiosk, result, slot), slot.module_id, bundle_id=slot.bundle.bundle_id,
            bundle_version=slot.bundle.version, bundle_sha256=slot.bundle.sha256,
            backend=info.get("describe") or result.backend, precision=info.get("precision"))
    except CaseLogError as exc:
        kiosk.messages.say(str(exc).split(". Fix:")[0])
        kiosk.reporter.log("case not saved: {}".format(exc))
        return
    kiosk.cases_saved += 1
    kiosk.messages.say("Case saved ({})".format(case.number))
    kiosk.reporter.line("[{}] case saved {} {} -> {}".format(kiosk.frames, case.number, case.uid, case.image))


def heatmap(kiosk):
    """H: show or hide where the model looked (bundles exported with a heatmap output only)."""
    bundle = kiosk.slot.bundle
    if bundle is None or not getattr(bundle, "heatmap", None):
        kiosk.show_heatmap = False
        kiosk.messages.say(_(HEATMAP_MISSING))
        return
    kiosk.show_heatmap = not kiosk.show_heatmap
    kiosk.messages.say(_(HEATMAP_ON) if kiosk.show_heatmap else _(HEATMAP_OFF))


def quit_kiosk(kiosk):
    if kiosk.kiosk_mode:
        kiosk.messages.say("Kiosk mode: the kiosk cannot be closed from the keyboard")
        return True
    return False


KEY_HANDLERS = {
    "SPACE": toggle_freeze,
    "M": next_module,
    "F": next_image,
    "S": save_case,
    "H": heatmap,
    "Q": quit_kiosk,
    "ESC": quit_kiosk,
}


def on_key(kiosk, key):
    """Run the key's handler; False when it ends the run."""
    handler = KEY_HANDLERS.get(key)
    if handler is None:
        return True
    return handler(kiosk) is not False
