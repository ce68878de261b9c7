"""Capture mode (key C, when ``[capture] enabled``): labelled photos for training a module, consent first.

Two screens, each with its own keys (tables, no if/elif chain):

* consent: the statement the person photographed (or their guardian) agrees to. ENTER = consent
  given: a subject (a random id, no name) starts and the consent is recorded; ESC = no consent:
  back to the kiosk, nothing stored. No other key gives consent (SPACE, the photo key, does nothing).
* capture: the live camera, the label list with a counter per class, the quality warning of the
  frame (edge.quality), and the keys: SPACE photo, M/F next/previous label, E export to the USB
  stick, C next person (consent again), ESC done (back to the kiosk).

The mode runs its own loop over the kiosk's source, sink and keys until it is left, so the kiosk's
loop and inference thread are untouched meanwhile; photos go to ``edge.capture.CaptureStore``.

E exports as the kiosk's E does: through the root helper (the kiosk's own USB exporter, the stick
read-only but for the copy, all or nothing), in a thread of its own (``PhotoExportJob``) with the
same lines: "Exporting to the USB stick...", then "Safe to remove the USB stick - N photo(s)
exported to NAME" or the one-line failure. ESC during an export leaves once it is done (with its
outcome line; keys pressed meanwhile are ignored).
"""

import time

from edge.capture import CaptureError, CaptureStore
from edge.errors import MedkioskError, SourceError
from edge.i18n import N_, _
from edge.kiosk.screen import Messages
from edge.lazy import require
from edge.overlay import AMBER, BAR, DARK, GREY, IMAGE_BG, RED, WHITE, YELLOW, Layout
from edge.overlay_text import engine, fit, min_px, wrap

# How long an export under way may still run when the kiosk's run ends (as edge.kiosk.keys does).
EXPORT_WAIT_S = 15.0

NOT_CONFIGURED = N_("Capture mode is not configured. Fix: set [capture] in the config")
CONSENT_TITLE = N_("Photos for training - consent")
CONSENT_TEXT = N_("The person photographed, or their guardian, agrees that photos of their skin are stored "
                  "on this unit and used only to train and test the skin model. No name is stored. They may "
                  "say no: their care is the same.")
CONSENT_YES = N_("ENTER = consent given")
CONSENT_NO = N_("ESC = no consent: nothing is stored")
CAPTURE_BANNER = N_("CAPTURE - photos for training")
CAPTURE_KEYS = (N_("SPACE photo   M/F label   E export"), N_("C next person   ESC done"))
CLOSES_AFTER_EXPORT = N_("Capture mode closes when the export is done")
NO_FRAME = N_("No camera image")
SELECTED_BG = (60, 60, 60)


def _short(text):
    """The part of an error shown on screen (the fix goes to the journal)."""
    return text.split(". Fix:")[0]


# ---- drawing: own small functions over edge.overlay's public layout, colours and text engine ----
def _put(canvas, text, x, y, pixels, colour, max_width):
    """One line of text (baseline at ``y``), glyphs about ``pixels`` tall, in the worker's language:
    shrunk to fit ``max_width`` (to 70%, never below readable), then cut with an ellipsis."""
    drawer = engine()
    line, line_px = fit(drawer, "{}".format(text), pixels, False, max_width, least=0.7)
    drawer.draw(canvas, line, int(x), int(y), line_px, colour)


def _paragraph(canvas, text, x, y, pixels, colour, max_width, max_lines, upward=False):
    """Wrapped text from baseline ``y`` down (or, ``upward``, ending at ``y``), at most ``max_lines``."""
    drawer = engine()
    pixels = max(pixels, min_px(drawer))
    lines = wrap(drawer, "{}".format(text), pixels, False, max_width)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    step = max(pixels * 1.45, drawer.line_height(pixels))
    if upward:
        y -= step * (len(lines) - 1)
    for line in lines:
        _put(canvas, line, x, y, pixels, colour, max_width)
        y += step


def _letterbox(cv2, canvas, frame, rect):
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), IMAGE_BG, -1)
    if frame is None:
        return
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    height, width = frame.shape[:2]
    scale = min(rect.w / float(width), rect.h / float(height))
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    x0, y0 = rect.x + (rect.w - new_w) // 2, rect.y + (rect.h - new_h) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = cv2.resize(frame[:, :, :3], (new_w, new_h),
                                                       interpolation=cv2.INTER_LINEAR)


def _blank(size):
    np = require("numpy")
    canvas = np.empty((int(size[1]), int(size[0]), 3), dtype=np.uint8)
    canvas[:] = DARK
    return canvas


def draw_consent(size, message=None):
    """The consent screen: the statement, then ENTER / ESC. No camera image is shown before consent."""
    canvas = _blank(size)
    layout = Layout(size)
    unit, pad = layout.unit, layout.pad * 3
    width = layout.width - 2 * pad
    _put(canvas, _(CONSENT_TITLE), pad, pad + unit * 1.2, unit * 1.1, YELLOW, width)
    _paragraph(canvas, _(CONSENT_TEXT), pad, pad + unit * 3.2, unit * 0.8, WHITE, width, 8)
    if message:
        _paragraph(canvas, message, pad, layout.height - pad - unit * 3.4, unit * 0.7, AMBER, width, 2,
                   upward=True)
    _put(canvas, _(CONSENT_YES), pad, layout.height - pad - unit * 1.5, unit * 0.9, YELLOW, width)
    _put(canvas, _(CONSENT_NO), pad, layout.height - pad, unit * 0.9, YELLOW, width)
    return canvas


def _label_window(count, selected, rows):
    """The first label row shown so that ``selected`` is visible in ``rows`` rows."""
    if count <= rows:
        return 0
    return min(max(0, selected - rows // 2), count - rows)


def draw_capture(size, frame, view):
    """The capture screen: the live camera on the left, labels with their counters on the right."""
    cv2 = require("cv2")
    canvas = _blank(size)
    layout = Layout(size)
    unit, pad = layout.unit, layout.pad
    image, panel = layout.image, layout.panel
    _letterbox(cv2, canvas, frame, image)
    problem = view["quality"]
    border = AMBER if problem else BAR
    if problem:  # a dark band under the warning: readable over a bright photo
        cv2.rectangle(canvas, (image.x, int(image.h - unit * 2.9)), (image.x + image.w - 1, image.h - 1),
                      DARK, -1)
    cv2.rectangle(canvas, (image.x, image.y), (image.x + image.w - 1, image.y + image.h - 1), border,
                  max(2, int(unit * 0.2)))
    cv2.rectangle(canvas, (image.x, 0), (image.x + image.w - 1, int(unit * 1.4)), RED, -1)
    _put(canvas, _(CAPTURE_BANNER), pad, unit * 1.05, unit * 0.75, WHITE, image.w - 2 * pad)
    if frame is None:
        _put(canvas, _(NO_FRAME), pad * 2, image.h // 2, unit * 0.8, AMBER, image.w - 4 * pad)
    if problem:
        _paragraph(canvas, problem, pad * 2, image.h - pad * 2, unit * 0.7, AMBER, image.w - 4 * pad, 2,
                   upward=True)
    x, inner = panel.x + pad, panel.w - 2 * pad
    _put(canvas, view["title"], x, pad + unit, unit * 0.9, WHITE, inner)
    _put(canvas, view["person"], x, pad + unit * 2.2, unit * 0.65, GREY, inner)
    top = pad + unit * 3.6
    keys_y = layout.height - pad - unit * 0.9
    message_y = keys_y - unit * 1.1
    row_h = unit * 1.25
    rows = max(1, int((message_y - unit * 1.9 - top) // row_h))
    labels = view["labels"]
    first = _label_window(len(labels), view["selected"], rows)
    for index in range(first, min(len(labels), first + rows)):
        label, total, session = labels[index]
        y = top + (index - first) * row_h
        chosen = index == view["selected"]
        colour = YELLOW if chosen else WHITE
        if chosen:
            cv2.rectangle(canvas, (panel.x, int(y - unit * 0.95)),
                          (panel.x + panel.w - 1, int(y + unit * 0.3)), SELECTED_BG, -1)
        name = "{} {}".format(">" if chosen else " ", label)
        _put(canvas, name, x, y, unit * 0.75, colour, inner * 0.6)
        counter = "{}".format(total) + (" (+{})".format(session) if session else "")
        _put(canvas, counter, x + inner * 0.62, y, unit * 0.75, colour, inner * 0.38)
    if view["message"]:
        _paragraph(canvas, view["message"], x, message_y, unit * 0.6, YELLOW, inner, 2, upward=True)
    for index, keys in enumerate(CAPTURE_KEYS):
        _put(canvas, _(keys), x, keys_y + index * unit * 0.9, unit * 0.6, GREY, inner)
    return canvas


# ---- the mode ----
class CaptureMode(object):
    """The consent and capture screens over the kiosk's source, sink and keys; ``run()`` until left."""

    def __init__(self, kiosk, settings, store):
        self.kiosk = kiosk
        self.settings = settings
        self.store = store
        self.stage = "consent"
        self.session = None
        self.selected = 0
        self.counts = store.counts()
        self.messages = Messages()
        self.frame = None
        self.quality = None
        self.photos = 0  # stored during this visit
        self.leaving = False
        self.leave_message = None
        self.export_job = None  # the USB export started with E (edge.kiosk.export_job.PhotoExportJob)
        self.leave_after_export = False  # ESC during an export: leave with its outcome line

    @property
    def label(self):
        return self.settings.labels[self.selected]

    def run(self):
        """Until ESC (and an export under way is done). False when the kiosk's run must end meanwhile
        (an export under way then gets EXPORT_WAIT_S to finish)."""
        try:
            carry_on = self._loop()
        finally:
            self.end_session()
            if self.exporting():
                self.export_job.wait(EXPORT_WAIT_S)
        if self.leave_after_export:
            self.leave_message = self.export_job.line
        return carry_on

    def _loop(self):
        """Read, draw, take a key; no key is taken once leaving (only the export is waited for)."""
        while not self.leaving or self.exporting():
            if self.kiosk.finished:
                return False
            frame = self._read()
            if frame is False:
                return False
            if self.export_job is not None:
                self.export_job.keep_saying()
            self._show(frame)
            key = self._key()
            handler = STAGE_KEYS[self.stage].get(key) if key and not self.leaving else None
            if handler is not None:
                handler(self)
        return True

    def exporting(self):
        return self.export_job is not None and not self.export_job.done

    def leave(self, message):
        """Back to the kiosk with ``message``; during an export, once it is done, with its outcome."""
        self.leaving = True
        self.leave_message = message
        if self.exporting():
            self.leave_after_export = True
            self.say(_(CLOSES_AFTER_EXPORT))

    def _read(self):
        """The next camera frame (None when there is none now), False at the end of a file source."""
        kiosk = self.kiosk
        if kiosk.sink.interactive:
            kiosk.clock.pace(kiosk.source.fps)
        try:
            ok, frame, _stamp = kiosk.source.read()
        except SourceError as exc:
            kiosk.health.fail(str(exc))
            time.sleep(0.05)
            return None
        if not ok:
            return False if kiosk.source.finished else None
        return frame

    def _show(self, frame):
        from edge.quality import assess_quality

        kiosk = self.kiosk
        if self.stage == "consent":
            self.frame, self.quality = None, None  # nothing of the person is kept before consent
            canvas = draw_consent(kiosk.size, self.messages.current())
        else:
            self.frame = frame
            self.quality = assess_quality(frame, self.settings.quality) if frame is not None else None
            canvas = draw_capture(kiosk.size, frame, self.view())
        kiosk.sink.write(canvas)
        kiosk.frames += 1
        kiosk.clock.tick()
        kiosk.reporter.watchdog()

    def _key(self):
        kiosk = self.kiosk
        return kiosk.keys.next_key() if kiosk.keys is not None else kiosk.sink.poll_key(1)

    def view(self):
        """What the capture screen shows (a dict: also what the tests read)."""
        per_session = self.session.per_label if self.session is not None else {}
        quality, session = self.quality, self.session
        return {
            "title": _("Capture: {}").format(self.settings.module),
            "person": _("Person {} - {} photo(s)").format(session.subject[-6:] if session else "-",
                                                          session.photos if session else 0),
            "labels": [(label, self.counts.get(label, 0), per_session.get(label, 0))
                       for label in self.settings.labels],
            "selected": self.selected,
            "quality": quality.message if quality is not None and not quality.ok else None,
            "message": self.messages.current(),
        }

    def say(self, text):
        self.messages.say(text)

    def fail(self, exc):
        self.say(_short(str(exc)))
        self.kiosk.reporter.log("capture: {}".format(exc))

    def end_session(self):
        if self.session is not None:
            session, self.session = self.session, None
            self.store.end_session(session)
            self.kiosk.reporter.log("capture: person {} done, {} photo(s)".format(session.subject,
                                                                                 session.photos))


# ---- keys of the consent screen ----
def consent_given(mode):
    try:
        mode.session = mode.store.start_session(True, mode.settings.captured_by)
    except CaptureError as exc:
        mode.fail(exc)
        return
    mode.stage = "capture"
    mode.kiosk.reporter.log("capture: consent given for person {} (recorded by {})".format(
        mode.session.subject, mode.settings.captured_by))
    mode.say(_("Consent recorded. Choose the label with M/F, SPACE takes a photo"))


def consent_refused(mode):
    mode.leave(_("No consent - nothing stored"))
    mode.kiosk.reporter.log("capture: consent not given, nothing stored")


# ---- keys of the capture screen ----
def take_photo(mode):
    if mode.frame is None:
        mode.say(_(NO_FRAME))
        return
    label = mode.label
    try:
        record = mode.store.save(mode.session, mode.frame, label, quality=mode.quality)
    except CaptureError as exc:
        mode.fail(exc)
        return
    mode.photos += 1
    mode.counts[label] = mode.counts.get(label, 0) + 1
    if mode.quality is not None and not mode.quality.ok:
        mode.say(_("Saved: {} ({}) - with a quality warning").format(label, mode.counts[label]))
    else:
        mode.say(_("Saved: {} ({})").format(label, mode.counts[label]))
    mode.kiosk.reporter.line("[{}] capture photo {} label {} quality {}".format(
        mode.kiosk.frames, record["file"], label, "ok" if mode.quality is None or mode.quality.ok else
        mode.quality.message))


def next_label(mode):
    mode.selected = (mode.selected + 1) % len(mode.settings.labels)


def previous_label(mode):
    mode.selected = (mode.selected - 1) % len(mode.settings.labels)


def export_photos(mode):
    """E: every photo onto the USB stick through the root helper, as the kiosk's E does (its exporter:
    the outbox and the helper's trigger), in a thread of its own; one export at a time, cases or photos."""
    from edge.kiosk.export_job import BUSY, NOT_CONFIGURED, PhotoExportJob, failure_line

    kiosk = mode.kiosk
    desk = kiosk.desk
    if mode.exporting() or (desk.export_job is not None and not desk.export_job.done):
        mode.say(_(BUSY))
        return
    if desk.exporter_factory is None:
        mode.say(_(NOT_CONFIGURED))
        return
    try:
        if desk.exporter is None:
            desk.exporter = desk.exporter_factory(kiosk)
    except MedkioskError as exc:
        mode.say(failure_line(exc))
        kiosk.reporter.log("capture: USB export failed: {}".format(exc))
        return
    mode.export_job = PhotoExportJob(desk.exporter, mode.store, mode.settings.labels, mode.messages,
                                     kiosk.reporter.log).start()


def next_person(mode):
    mode.end_session()
    mode.stage = "consent"
    mode.say(_("Next person: consent first"))


def done(mode):
    mode.leave(_("Capture mode closed"))


STAGE_KEYS = {
    "consent": {"ENTER": consent_given, "ESC": consent_refused},
    "capture": {"SPACE": take_photo, "M": next_label, "F": previous_label, "E": export_photos,
                "C": next_person, "ESC": done},
}


def run_capture(kiosk):
    """Key C: capture mode until it is left; False when the kiosk's run must end meanwhile."""
    settings = kiosk.capture
    problem = settings.problem() if settings is not None else _(NOT_CONFIGURED)
    if problem:
        kiosk.messages.say(_short(problem))
        kiosk.reporter.log("capture mode not started: {}".format(problem))
        return True
    try:
        store = CaptureStore(settings.state_dir, settings.module, settings.min_free_mb).open()
    except MedkioskError as exc:  # the state folder cannot be used, a bad module id in the config
        kiosk.messages.say(_short(str(exc)))
        kiosk.reporter.log("capture mode not started: {}".format(exc))
        return True
    kiosk.smoother.reset()
    kiosk.pipeline.drop()
    kiosk.freeze.release()
    kiosk.screen.result = None
    mode = CaptureMode(kiosk, settings, store)
    carry_on = mode.run()
    kiosk.pipeline.resubmit()
    if mode.leave_message:
        kiosk.messages.say(mode.leave_message)
    return carry_on
