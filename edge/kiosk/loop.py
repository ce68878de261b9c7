"""The kiosk loop, read top to bottom: capture -> locate -> classify -> overlay -> render.

* Capture: live cameras keep only their newest frame in their own grabber thread
  (``edge.sources``); ``source.read()`` blocks until the next frame.
* Locate (live cameras, X-ray modules only: ``edge.classify.localises``): ``locate(frame)``
  (``edge.locate.locate`` in ``medkiosk run``; identity, None, when not given) finds the film or
  screen. It travels with the frame (``Job.locate``) and runs on the worker's prepare thread only
  for the frames that are classified, its result handed to the classifier (never located twice);
  the newest one is the live outline (``Screen.located``), which ``OutlineTracker`` turns into
  "searching"/"hold_still"/"locked". A camera faster than inference thus has no frame located that
  is not classified, and the display thread does not locate at all. Files, folders and a frozen
  image go through classify's own localisation.
* Classify: one inference thread (``worker.InferenceWorker``) owns every runner. Live, every new
  frame is posted; the worker's prepare thread prepares the newest just before inference needs it
  (stale ones are dropped, never prepared), so inference never waits for the display; the display
  wakes when a result lands (within the frame's time), so a result shown is never older than one
  inference plus one frame (``Kiosk.result_ages``, beside each its own work ``result_work_s``). Files
  and image folders run as the depth-1 ``pipeline.FilePipeline``: every frame drawn with its own result.
* Overlay and render: ``OverlayRenderer.draw`` then ``sink.write``; keys (``keys``) are polled once a
  screen. Live, a screen is drawn when a result lands (at once) or when the display's next slot has
  come (``screen.DisplayPacer``, ``[display] fps``, 60 by default): a camera faster than the screen
  refreshes has every frame posted for inference but not every frame drawn. The display thread runs
  ``[display] nice`` levels below inference (``priority``): when both want a core, the result wins;
  with ``[kiosk] cpu_split``, a CPU runner's inference thread has cores of its own (``CoreSplit``).

A camera that disappears never stops the loop; per-frame errors are counted and too many in a row
end the run with a non-zero status so systemd restarts it (``health``).
"""

import os
import sys
import threading
import time

from edge.console import printable
from edge.errors import SourceError
from edge.i18n import _
from edge.kiosk import priority
from edge.kiosk.health import Health, KioskFailure
from edge.kiosk.keys import Desk, on_key
from edge.kiosk.modules import ModuleSet, default_classifier_opener
from edge.kiosk.pipeline import FilePipeline
from edge.kiosk.report import Reporter
from edge.kiosk.screen import DisplayPacer, FrameClock, Freeze, Messages, Screen
from edge.kiosk.views import KioskViews
from edge.kiosk.worker import InferenceWorker
from edge.locate import OutlineTracker
from edge.overlay import OverlayRenderer, OverlayState, prediction_state
from edge.smoothing import ProbabilitySmoother


def locate_whole_frame(_frame):
    """The "locate" step when none is given (tests, ``--no-locate``): the whole frame (None)."""
    return None


def guide_localisation(frame):
    """The guide rectangle as a not-found Localisation of ``frame`` (the outline before any is located)."""
    from edge.locate import Localisation, guide_quad

    return Localisation(False, guide_quad(frame.shape[1], frame.shape[0]), "guide", frame)


def developer_notice(slots, trust=None):
    """DEVELOPER_BANNER when the trust in use allows unsigned bundles or a loaded bundle is not
    properly signed (its ``signature_problem``); else None."""
    from edge.signing import DEVELOPER_BANNER, default_trust

    trust = trust if trust is not None else default_trust()
    problems = [slot.bundle.signature_problem for slot in slots
                if slot.bundle is not None and getattr(slot.bundle, "signature_problem", None)]
    return DEVELOPER_BANNER if trust.developer_mode or problems else None


class Kiosk(object):
    """Runs the loop until ``max_frames``, the end of a file, Q (not in kiosk mode) or ``stop()``."""

    def __init__(self, source, sink, slots, start=0, open_classifier=None, keys=None, kiosk_mode=True,
                 max_frames=None, smoothing=0.0, caselog_factory=None, importer_factory=None, notifier=None,
                 exporter_factory=None,
                 stdout=None, stderr=None, max_consecutive_failures=30, inference_timeout_s=30.0,
                 size=(1280, 720), locate=None, trust=None, capture=None, pairing=None, display_fps=60.0,
                 display_nice=0, cpu_split=False):
        self.source = source
        self.sink = sink
        self.modules = ModuleSet(slots, start)
        self.open_classifier = open_classifier or default_classifier_opener()
        self.locate = locate or locate_whole_frame
        self.tracker = OutlineTracker()
        self._outline_seq = None  # the job whose localisation is the outline now
        self.developer_notice = developer_notice(self.modules.slots, trust)
        self.keys = keys
        self.kiosk_mode = kiosk_mode
        self.max_frames = max_frames
        self.size = tuple(size)
        self.smoother = ProbabilitySmoother(smoothing)
        self.reporter = Reporter(stderr or sys.stderr, stdout, notifier)
        self.health = Health(self.reporter.log, max_consecutive_failures, inference_timeout_s)
        self.desk = Desk(caselog_factory, importer_factory, exporter_factory)
        self.capture = capture  # edge.capture.CaptureSettings for key C; None: capture mode is off
        self.renderer = OverlayRenderer()
        self.views = KioskViews(pairing)  # file name, technician box (T), pairing panel (P)
        self.screen = Screen()
        self.freeze = Freeze()
        self.messages = Messages()
        self.clock = FrameClock()
        self.pacer = DisplayPacer(display_fps)  # live: camera frames drawn at most display_fps a second
        self.display_nice = display_nice  # the display's priority below inference's (kiosk.priority)
        self.cores = priority.CoreSplit(cpu_split)  # a CPU runner's inference thread on cores of its own
        self.pipeline = FilePipeline(self._keepalive, self._stop_requested)
        self.frames = 0
        self.show_heatmap = False  # H: the result's class-activation map over the analysed image
        self.cases_saved = 0
        self.result_ages = []
        self.result_work_s = []  # beside each age: that result's own work (prepare + infer), in seconds
        self.worker = None
        self._stop = threading.Event()

    # ---- control and counters ----
    def stop(self):
        """Ask the loop to finish after the current frame (signal handlers call this)."""
        self._stop.set()

    def _stop_requested(self):
        return self._stop.is_set()

    @property
    def finished(self):
        """True once stop() was asked for or ``max_frames`` screens were shown (capture mode's loop)."""
        return self._stop.is_set() or (self.max_frames is not None and self.frames >= self.max_frames)

    @property
    def slot(self):
        return self.modules.current

    @property
    def slots(self):
        return self.modules.slots

    @property
    def frozen(self):
        return self.freeze.active

    @property
    def failures(self):
        return self.health.failures

    @property
    def consecutive_failures(self):
        return self.health.consecutive

    @property
    def last_error(self):
        return self.health.last_error

    def current_result(self):
        return self.screen.result if self.slot.usable else None

    def _keepalive(self):
        self.reporter.watchdog()
        self.health.check_stall(self.worker)

    # ---- the loop ----
    def run(self):
        """Run until finished; return the exit status (0) or raise KioskFailure."""
        self.reporter.module_problems(self.modules.problems())
        if self.developer_notice:
            self.reporter.log(self.developer_notice)
        self.worker = InferenceWorker(self.open_classifier, self.modules.slots, cores=self.cores).start()
        lowered = self._yield_to_inference()  # after the worker's threads started: they keep theirs
        stalled = False
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.frames >= self.max_frames:
                    break
                if not self._step():
                    break
        except KioskFailure:
            stalled = True
            raise
        finally:
            self.worker.stop(timeout=0.5 if stalled else 5.0)  # a hung runner is left to the process exit
            self.desk.close()
            priority.restore(lowered)
            self.cores.restore()
            self.reporter.stopping(self.frames)
        return 0

    def _yield_to_inference(self):
        """Lower this (the display) thread's priority by ``display_nice`` levels; the levels applied."""
        try:
            return priority.lower(self.display_nice)
        except OSError as exc:
            self.reporter.log(_("display priority unchanged ({}): the display and inference share the CPU "
                                "equally. Fix: allow setpriority, or set [display] nice = 0").format(exc))
            return 0

    def _step(self):
        """One screen: capture (+ locate + classify), then overlay and render."""
        slot = self.slot
        self.cores.place_loop_thread((slot.runner_info or {}).get("on_cpu"))
        live = self.source.live and not self.freeze.active
        advance = self._advance_live if live else self._advance_sequential
        if not advance(slot):
            return False
        if live and self.screen.frame is not None and not self.pacer.due(self.screen.result_seq):
            return True  # posted for inference, not drawn: the display's slot has not come, no new result
        return self._render(slot)

    # ---- capture ----
    def _read(self):
        """Next frame from the source, or (None, stamp) when there is none now; False at end of file."""
        if self.freeze.active:
            time.sleep(1.0 / max(1.0, self.source.fps or 15.0))
            return self.freeze.frame, self.freeze.stamp
        try:
            ok, frame, stamp = self.source.read()
        except SourceError as exc:
            self.health.fail(str(exc))
            time.sleep(0.05)
            return None, time.monotonic()
        if not ok:
            if self.source.finished:
                return False
            return None, stamp
        return frame, stamp

    def _source_name(self):
        path = getattr(self.source, "current_path", None)
        return printable(os.path.basename(path)) if path and not self.freeze.active else None

    # ---- live: capture -> locate -> classify (newest frame always posted) ----
    def _advance_live(self, slot):
        got = self._read()
        if got is False:
            return False
        frame, stamp = got
        if self.sink.interactive or frame is None:
            self.clock.pace(self.source.fps)
        self.screen.show(frame, stamp, None, self.screen.located if frame is not None else None)
        localising = self._localising(slot)
        if frame is not None and slot.usable and self.pipeline.is_new(stamp):
            self.clock.camera_frame(stamp)
            job = self.pipeline.new_job(frame, stamp, slot, False, live=True,
                                        locate=self.locate if localising else None)
            self.worker.submit(job)  # always: a stale frame still waiting is replaced by this one
            self._await_live_result(job)
        outcome = self.worker.take()
        if outcome is not None:
            self._apply(outcome, live=True)
        if frame is not None:
            self._update_outline(slot, localising)
        return True

    def _localising(self, slot):
        """True for a live X-ray module (its frames are located); otherwise the outline is cleared."""
        from edge.classify import localises

        if slot.usable and localises(slot.bundle):
            return True
        self.tracker.reset()
        self.screen.located = self.screen.outline_state = None
        self._outline_seq = None
        return False

    def _update_outline(self, slot, localising):
        """The newest frame the prepare thread located becomes the outline (once per located frame);
        until the first one, the guide rectangle while "searching"."""
        if not localising:
            return
        newest = self.worker.newest_outline()
        if newest is None or newest.slot is not slot:
            if self._outline_seq is None:
                self.screen.located = guide_localisation(self.screen.frame)
                self.screen.outline_state = self.tracker.state
            return
        if newest.seq == self._outline_seq:
            return
        self._outline_seq = newest.seq
        self.screen.located = newest.located
        self.screen.outline_state = self.tracker.update(newest.located)

    def _await_live_result(self, job):
        """Wake for each result that lands, until this frame's own; draw before the next frame is due."""
        deadline = self.clock.next_frame_due(job.stamp, self.source.fps) - self.clock.draw_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            outcome = self.worker.wait_any(remaining)
            if outcome is None:
                return
            self._apply(outcome, live=True)
            if outcome.job.seq >= job.seq:
                return

    # ---- files, folders, a frozen image: the depth-1 pipeline ----
    def _advance_sequential(self, slot):
        """Every new frame is drawn with its own result.

        A new frame is read and prepared here and queued behind the frame before it; then that
        earlier frame's own result is awaited and it is drawn while the new one is inferred. With
        nothing earlier to draw (the first frame, a new still image) it reads once more: a video
        yields its next frame, a still image repeats, and the repeat is where its own result is
        awaited. Returns False at the end of a file, after its last frame has been drawn.
        """
        if self.sink.interactive:
            self.clock.pace(self.source.fps)
        while True:
            got = self._read()
            if got is False:
                return self._finish_inflight()
            frame, stamp = got
            if frame is not None and slot.usable and self.pipeline.is_new(stamp):
                job = self._prepared_job(frame, stamp, slot)
                if job is None:  # could not be prepared (counted): skipped, the earlier frame is drawn
                    if self._finish_inflight():
                        return True
                    self.screen.result = None  # nothing earlier: this frame, drawn without a result
                    self.screen.show(frame, stamp, self._source_name())
                    return True
                earlier = self.pipeline.push(self.worker, job)
                if earlier is not None:
                    self._finish(earlier)
                    return True
                continue
            if self._finish_inflight():
                return True
            if not self.sink.interactive and (frame is None or stamp == self.screen.stamp):
                self.clock.pace(self.source.fps)  # nothing new: redraw at the source's frame rate
            if frame is not None or not self.freeze.active:
                self.screen.show(frame, stamp, self._source_name())
            return True

    def _prepared_job(self, frame, stamp, slot):
        """Prepare on this thread (once a runner is loaded; classify's own localisation finds the X-ray
        of an X-ray module); None if that fails (counted)."""
        prepared = None
        if slot.preparer is not None:
            try:
                prepared = slot.preparer(frame)
            except Exception as exc:  # counted like an inference failure; too many end the run
                self.pipeline.submitted_stamp = stamp
                self.health.fail("{}: preparing the frame: {}: {}".format(slot.module_id, type(exc).__name__,
                                                                          exc))
                return None
        return self.pipeline.new_job(frame, stamp, slot, self.freeze.active, prepared=prepared,
                                     name=self._source_name())

    def _finish_inflight(self):
        """Wait for the frame in flight, apply its result and make it the frame shown; False if none."""
        job = self.pipeline.take_inflight()
        if job is None:
            return False
        self._finish(job)
        return True

    def _finish(self, job):
        outcome = self.pipeline.wait(self.worker, job.seq)
        if outcome is not None:
            self._apply(outcome, live=False)
        self.screen.show(job.frame, job.stamp, job.name, job.located)

    # ---- classify: results back from the worker ----
    def _apply(self, outcome, live):
        job = outcome.job
        if outcome.slot_failed:
            job.slot.problem = _("Module cannot run here: {}").format(outcome.error)
            self.reporter.log(job.slot.problem)
            return
        if outcome.error is not None:
            if not live and self.pipeline.current(job):
                self.screen.result = None  # files: this frame is drawn next, never with another's result
            self.health.fail(outcome.error)
            return
        self.health.ok()
        if job.slot is not self.slot or job.frozen != self.freeze.active or not self.pipeline.current(job):
            return  # the user switched module, freeze state or image meanwhile
        prediction = outcome.prediction
        if live and self.smoother.factor > 0:
            prediction = self._smoothed(prediction, job.slot)
        self.screen.set_result(prediction, job)
        if live and self.screen.stamp is not None:
            self.result_ages.append(self.screen.stamp - job.stamp)
            self.result_work_s.append((prediction.latency_ms or 0.0) / 1000.0)

    def _smoothed(self, prediction, slot):
        kind = prediction_state(prediction, OverlayState())
        if kind in ("quality", "out_of_scope"):
            self.smoother.reset()
            return prediction
        from edge.classify import postprocess

        probabilities = self.smoother.update(prediction.probabilities, key=slot.module_id)
        outputs = {"probabilities": [probabilities]}
        if prediction.ood_score is not None:
            outputs["ood_score"] = [prediction.ood_score]
        if getattr(prediction, "heatmap", None) is not None:  # H shows the newest frame's map on its crop
            outputs["heatmap"] = [prediction.heatmap]
        return postprocess(outputs, slot.bundle, quality=prediction.quality, backend=prediction.backend,
                           latency_ms=prediction.latency_ms, localisation=prediction.localisation,
                           thumbnail=prediction.thumbnail)

    # ---- overlay -> render ----
    def _render(self, slot):
        self.health.check_stall(self.worker)
        disconnected = bool(self.source.disconnected) and not self.freeze.active
        if disconnected:
            self.screen.result = None
        started = time.monotonic()
        state = self._overlay_state(slot, disconnected)
        frame = self.screen.frame if not disconnected else None
        canvas = self.renderer.draw(frame, self.current_result(), state)
        self.views.draw(canvas, state, self._shown_name(),
                        self._technician_info(slot, state) if self.views.technician else None)
        if self.desk.mode is not None:
            canvas = self.desk.mode.draw(canvas)  # the patient-reference prompt (edge.kiosk.entry)
        self.desk.tick()
        self.sink.write(canvas)
        self.pacer.drawn(self.screen.result_seq)
        if self.frames == 0:
            self._report_window()
        self.frames += 1
        self.clock.tick(time.monotonic() - started)
        self.reporter.announce(slot)
        self.reporter.status(slot, self.source, self.freeze.active, disconnected)
        self.reporter.result(self.frames, slot, self.current_result(), self.screen.result_seq,
                             self.screen.name if not self.freeze.active else None)
        key = self.keys.next_key() if self.keys is not None else self.sink.poll_key(1)
        if key:
            return on_key(self, key)
        return True

    def _report_window(self):
        """After the first screen: the journal says when the window could not be made to fill the screen."""
        problem = getattr(self.sink, "window_problem", None)
        if problem:
            self.reporter.log(problem)
        fit = getattr(self.sink, "fit", None)
        if fit is not None and fit.screen != self.size:
            sizes = fit.screen + self.size + fit.screen
            self.reporter.log(_("the screen is {}x{} but [display] is {}x{}: the picture is scaled. Fix: set "
                                "[display] width = {} and height = {}").format(*sizes))

    def _shown_name(self):
        """The file name of the still image on screen (a USB image or a folder's), else None."""
        return self.freeze.name if self.freeze.active else self.screen.name

    def _technician_info(self, slot, state):
        from edge.technician_view import TechnicianInfo

        fit, problem = getattr(self.sink, "fit", None), getattr(self.sink, "window_problem", None)
        pairing = self.views.pairing
        bundle = slot.bundle
        return TechnicianInfo(
            backend=state.backend, precision=state.precision, provider=state.provider, fps=self.clock.fps,
            draw_ms=self.clock.draw_s * 1000.0 if self.clock.draw_s else None, latency_ms=state.latency_ms,
            module=slot.module_id,
            bundle="{} {}".format(bundle.bundle_id, bundle.version) if bundle is not None else None,
            source=self.source.describe(), window=problem or (fit.summary() if fit is not None else None),
            pairing=pairing.base_url if pairing.available else pairing.problem, notices=state.fallback_reason)

    def _module_line(self, slot):
        """The module's title and which of how many it is: "Chest X-ray (adult) - 1/2"."""
        return "{} - {}/{}".format(slot.title, self.modules.index + 1, len(self.modules.slots))

    def _overlay_state(self, slot, disconnected):
        info = slot.runner_info or {}
        notices = info.get("notices") or []
        result = self.current_result()
        located = self.screen.located if self.source.live and not self.freeze.active else None
        return OverlayState(
            module_title=self._module_line(slot), module_installed=slot.usable, module_problem=slot.problem,
            frozen=self.freeze.active,
            analysing=slot.usable and self.screen.frame is not None and result is None,
            disconnected=disconnected, source_notice=getattr(self.source, "notice", None),
            message=self.messages.current(), backend=info.get("name"), precision=info.get("precision"),
            provider=info.get("provider"), fallback_reason="; ".join(notices) if notices else None,
            on_cpu=info.get("on_cpu", False), fps=self.clock.fps,
            latency_ms=getattr(result, "latency_ms", None), show_keys=True, size=self.size,
            outline=located.quad if located is not None else None,
            outline_state=self.screen.outline_state if located is not None else None,
            developer_notice=self.developer_notice, heatmap=self.show_heatmap)
