"""The kiosk loop: capture -> classify -> overlay -> display, with capture and inference decoupled.

* Capture: live cameras keep only their newest frame in their own grabber thread
  (``edge.sources``); ``source.read()`` blocks until the next frame, so the display loop runs at
  the camera's frame rate.
* Inference: one worker thread classifies the newest frame, handed over only when it is free
  (nothing queues). It owns every runner: TensorRT/CUDA contexts are bound to the thread that made them.
* Display: draws the newest result over the newest frame. In live mode the result shown is never
  older than one inference plus one frame (``Kiosk.result_ages`` records it). Files and image
  folders are not live: every frame is classified and drawn with its own result, nothing is
  skipped. They run as a depth-1 pipeline: the display thread reads and prepares frame N+1
  (decode, preprocess, quality gate) and hands it to the inference thread before it draws frame
  N, so inference runs back to back while this thread decodes and draws.

The pure steps (``Classifier.classify``, ``draw_overlay``) stay pure; this module only orchestrates.
Keys: SPACE freeze/live, M next module, F next image (import folder), S save case, H heatmap,
Q quit (not in kiosk mode). A camera that disappears never stops the loop; per-frame errors are
counted and too many in a row end the run with a non-zero status so systemd restarts it.
"""

import json
import os
import sys
import threading
import time

from edge.errors import BundleError, MedkioskError, SourceError
from edge.overlay import OverlayRenderer, OverlayState, prediction_state
from edge.smoothing import ProbabilitySmoother

MESSAGE_SECONDS = 3.0
LOAD_TIMEOUT_S = 300.0  # deserialising a TensorRT engine on a Jetson Nano can take a while
HEATMAP_MISSING = "Heatmap not available for this model"


class KioskFailure(MedkioskError):
    """The loop cannot go on (too many consecutive failures, inference stalled): exit non-zero."""

    exit_code = 3


class ModuleSlot(object):
    """One configured module: its bundle when installed, else why it is not usable."""

    def __init__(self, module_id, bundle=None, problem=None):
        self.module_id = module_id
        self.bundle = bundle
        self.problem = problem
        self.runner_info = None  # set by the inference worker once the runner is loaded
        self.preparer = None  # set with it: a FramePreparer the display thread uses (files and folders)

    @property
    def title(self):
        return self.bundle.title if self.bundle is not None else self.module_id

    @property
    def usable(self):
        return self.bundle is not None and self.problem is None

    def __repr__(self):
        return "ModuleSlot({!r}, installed={}, problem={!r})".format(
            self.module_id, self.bundle is not None, self.problem)


def _manifest_module_id(folder):
    try:
        with open(os.path.join(folder, "manifest.json")) as handle:
            return json.load(handle)["module"]["id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def discover_modules(models_dir, module_ids, first=None):
    """ModuleSlots for ``module_ids`` (config order) from the bundles under ``models_dir``.

    ``models_dir`` may also be one bundle folder. ``first`` (``--module``) is put first when it
    is not listed. A listed module without a bundle is "not installed"; a bundle that fails
    validation is listed with its problem. Returns (slots, start index).
    """
    from edge.bundle import load_bundle

    folders = []
    if os.path.isfile(os.path.join(models_dir, "manifest.json")):
        folders = [models_dir]
    elif os.path.isdir(models_dir):
        folders = sorted(os.path.join(models_dir, name) for name in os.listdir(models_dir)
                         if os.path.isfile(os.path.join(models_dir, name, "manifest.json")))
    found = {}
    for folder in folders:
        try:
            bundle = load_bundle(folder)
        except BundleError as exc:
            module_id = _manifest_module_id(folder) or os.path.basename(folder.rstrip("/"))
            found.setdefault(module_id, ModuleSlot(module_id, problem="Model bundle damaged: {}".format(exc)))
            continue
        found[bundle.module_id] = ModuleSlot(bundle.module_id, bundle=bundle)
    ids = list(module_ids)
    if first and first not in ids:
        ids.insert(0, first)
    if not ids:
        ids = sorted(found)
    slots = []
    for module_id in ids:
        slot = found.get(module_id)
        if slot is None:
            slot = ModuleSlot(module_id, problem="No model bundle for '{}' in {}. Install it, or press M for "
                                                 "another module".format(module_id, models_dir))
        slots.append(slot)
    if first:
        start = ids.index(first)
    else:
        start = next((i for i, slot in enumerate(slots) if slot.usable), 0)
    return slots, start


class Job(object):
    """One frame handed to the inference thread; ``prepared`` when the display thread prepared it."""

    def __init__(self, seq, frame, stamp, slot, frozen, prepared=None, generation=0, name=None):
        self.seq = seq
        self.frame = frame
        self.stamp = stamp
        self.slot = slot
        self.frozen = frozen
        self.prepared = prepared
        self.generation = generation
        self.name = name


class Outcome(object):
    def __init__(self, job, prediction=None, error=None, slot_failed=False):
        self.job = job
        self.prediction = prediction
        self.error = error
        self.slot_failed = slot_failed
        self.finished = time.monotonic()


def runner_info(classifier):
    runner = classifier.runner
    provider = runner.provider or ""
    notices = list(classifier.notices())
    on_cpu = "CPU" in provider.upper()
    return {"name": runner.name, "precision": runner.precision, "provider": provider, "notices": notices,
            "on_cpu": on_cpu, "describe": runner.describe()}


class InferenceWorker(object):
    """One thread that owns the runners and classifies the newest submitted frame.

    One job runs and one waits (``submit`` replaces a waiting job, or with ``queue`` waits until the
    worker has taken it). The last few outcomes are kept by sequence number, so a pipelined caller
    can wait for a particular frame's result while the next one is already being inferred.
    """

    KEEP_OUTCOMES = 4

    def __init__(self, open_classifier):
        self.open_classifier = open_classifier
        self._cond = threading.Condition()
        self._pending = None
        self._outcomes = {}  # seq -> Outcome, the last KEEP_OUTCOMES
        self._latest = 0  # seq of the newest outcome
        self._taken = 0
        self._stop = False
        self.busy_since = None  # when the current job started (loading its runner included)
        self.phase = None  # "loading" a runner or "inferring"
        self.phase_since = None
        self.dropped = 0
        self.classifiers = {}
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def submit(self, job, queue_s=None):
        """Hand ``job`` over and return True. A job still waiting is replaced (live: only the newest
        frame matters); with ``queue_s`` it waits up to that long for the worker to take the waiting
        job instead, and returns False (``job`` not handed over) if it did not."""
        with self._cond:
            if queue_s is not None:
                deadline = time.monotonic() + queue_s
                while self._pending is not None and not self._stop:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._pending is not None:
                self.dropped += 1
            self._pending = job
            self._cond.notify_all()
            return True

    def take(self):
        """The newest outcome not yet taken, or None."""
        with self._cond:
            outcome = self._outcomes.get(self._latest)
            if outcome is None or self._latest <= self._taken:
                return None
            self._taken = self._latest
            return outcome

    def wait_for(self, seq, timeout):
        """Wait until the job ``seq`` is done; return its outcome, or None on timeout or stop, or when
        a later job finished without it (jobs run in order, so it was replaced and never will)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while seq not in self._outcomes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop or self._latest > seq:
                    return None
                self._cond.wait(remaining)
            self._taken = max(self._taken, seq)
            return self._outcomes[seq]

    def gone(self, seq):
        """True when job ``seq`` will never have an outcome to wait for (replaced, or long taken)."""
        with self._cond:
            return seq not in self._outcomes and self._latest > seq

    @property
    def idle(self):
        with self._cond:
            return self._pending is None and self.busy_since is None

    def stop(self, timeout=5.0):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _classifier(self, slot):
        classifier = self.classifiers.get(slot.module_id)
        if classifier is None:
            classifier = self.open_classifier(slot)
            self.classifiers[slot.module_id] = classifier
            slot.runner_info = runner_info(classifier)
            # Openers may return any object with classify(); those without a preparer are classified whole.
            make_preparer = getattr(classifier, "preparer", None)
            slot.preparer = make_preparer(depth=2) if make_preparer is not None else None
        return classifier

    def _run(self):
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    job, self._pending = self._pending, None
                    self.busy_since = time.monotonic()
                outcome = self._process(job)
                with self._cond:
                    self._outcomes[job.seq] = outcome
                    self._latest = job.seq
                    for old in [seq for seq in self._outcomes if seq <= job.seq - self.KEEP_OUTCOMES]:
                        del self._outcomes[old]
                    self.busy_since = None
                    self.phase = self.phase_since = None
                    self._cond.notify_all()
        finally:
            for classifier in self.classifiers.values():
                classifier.__exit__(None, None, None)
            self.classifiers = {}

    def _set_phase(self, phase):
        self.phase, self.phase_since = phase, time.monotonic()

    def _process(self, job):
        if job.slot.module_id not in self.classifiers:
            self._set_phase("loading")
        try:
            classifier = self._classifier(job.slot)
        except MedkioskError as exc:
            return Outcome(job, error="{}: {}".format(job.slot.module_id, exc), slot_failed=True)
        self._set_phase("inferring")
        try:
            if job.prepared is not None:
                return Outcome(job, prediction=classifier.infer_prepared(job.prepared))
            return Outcome(job, prediction=classifier.classify(job.frame))
        except Exception as exc:  # reported to the loop, which counts it and stops after too many
            return Outcome(job, error="{}: {}: {}".format(job.slot.module_id, type(exc).__name__, exc))


def default_classifier_opener(backend="auto", precision="fp16", engine_cache=None, quality=None,
                              threads=None):
    """A function slot -> loaded Classifier (runs in the inference thread).

    ``threads``: CPU inference threads (ONNX Runtime); None is the runtime's own default.
    """
    from edge.classify import Classifier
    from edge.quality import QualityThresholds

    thresholds = QualityThresholds.from_mapping(quality) if quality is not None else None

    def open_classifier(slot):
        classifier = Classifier.open(slot.bundle, backend=backend, precision=precision, threads=threads,
                                     engine_cache=engine_cache, quality_thresholds=thresholds)
        return classifier.__enter__()

    return open_classifier


def format_result_line(frame_number, slot, prediction, kind, image_name=None):
    """The one line printed per new result in headless mode (``image_name``: a still image's file)."""
    head = "[{}] {}".format(frame_number, slot.module_id)
    if image_name:
        head += " {}:".format(image_name)
    if kind == "quality":
        return "{}  IMAGE QUALITY: {}".format(head, prediction.quality.message)
    if kind == "out_of_scope":
        return "{}  OUT OF SCOPE: {}".format(head, prediction.out_of_scope_message)
    top = " | ".join("{} {:.1f}%".format(name, 100.0 * p) for name, p in prediction.top3)
    flag = "  UNCERTAIN" if kind == "uncertain" else ""
    latency = "" if prediction.latency_ms is None else ", {:.1f} ms".format(prediction.latency_ms)
    return "{}  {}{}  ({}{})".format(head, top, flag, prediction.backend, latency)


class Kiosk(object):
    """Runs the loop until ``max_frames``, the end of a file, Q (not in kiosk mode) or ``stop()``."""

    def __init__(self, source, sink, slots, start=0, open_classifier=None, keys=None, kiosk_mode=True,
                 max_frames=None, smoothing=0.0, caselog_factory=None, importer_factory=None, notifier=None,
                 stdout=None, stderr=None, max_consecutive_failures=30, inference_timeout_s=30.0,
                 size=(1280, 720)):
        self.source = source
        self.sink = sink
        self.slots = list(slots)
        self.index = start
        self.open_classifier = open_classifier or default_classifier_opener()
        self.keys = keys
        self.kiosk_mode = kiosk_mode
        self.max_frames = max_frames
        self.smoother = ProbabilitySmoother(smoothing)
        self.caselog_factory = caselog_factory
        self.importer_factory = importer_factory
        self.notifier = notifier
        self.stdout = stdout
        self.stderr = stderr or sys.stderr
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.inference_timeout_s = float(inference_timeout_s)
        self.size = tuple(size)
        self._stop = threading.Event()
        # loop state
        self.frames = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.cases_saved = 0
        self.result_ages = []
        self.last_error = None
        self.frozen = False
        self._frozen_frame = None
        self._frozen_stamp = None
        self.renderer = OverlayRenderer()
        self._result_seq = None
        self._frame = None
        self._stamp = None
        self._result = None
        self._result_stamp = None
        self._seq = 0
        self._generation = 0  # bumped when a key makes the frame in flight obsolete
        self._inflight = None  # files and folders: the job submitted but not yet drawn
        self._shown_name = None
        self._submitted_stamp = None
        self._message = None
        self._fps = None
        self._last_tick = None
        self._caselog = None
        self._importer = None
        self._printed_seq = None
        self._ready = False
        self._announced = set()

    # ---- control ----
    def stop(self):
        """Ask the loop to finish after the current frame (signal handlers call this)."""
        self._stop.set()

    @property
    def slot(self):
        return self.slots[self.index]

    def _say(self, text):
        self._message = (text, time.monotonic() + MESSAGE_SECONDS)

    def _log(self, text):
        self.stderr.write("medkiosk: {}\n".format(text))
        self.stderr.flush()

    def _fail(self, text):
        """Count one failed frame; too many in a row end the run."""
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = text
        if self.consecutive_failures <= 3 or self.consecutive_failures % 10 == 0:
            self._log("frame error {} in a row: {}".format(self.consecutive_failures, text))
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise KioskFailure("{} consecutive frame failures, last: {}. Fix: see the errors above; systemd "
                               "restarts the kiosk".format(self.consecutive_failures, text))

    # ---- the loop ----
    def run(self):
        """Run until finished; return the exit status (0) or raise KioskFailure."""
        worker = InferenceWorker(self.open_classifier).start()
        stalled = False
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.frames >= self.max_frames:
                    break
                if not self._step(worker):
                    break
        except KioskFailure:
            stalled = True
            raise
        finally:
            worker.stop(timeout=0.5 if stalled else 5.0)  # a hung runner is left to the process exit
            if self._caselog is not None:
                self._caselog.close()
            if self._importer is not None:
                self._importer.close()
            if self.notifier is not None:
                self.notifier.stopping("stopped after {} frames".format(self.frames))
        return 0

    def _read(self):
        """Next frame from the source, or (None, stamp) when there is none now; False at end of file."""
        if self.frozen:
            fps = self.source.fps or 15.0
            time.sleep(1.0 / max(1.0, fps))
            return self._frozen_frame, self._frozen_stamp
        try:
            ok, frame, stamp = self.source.read()
        except SourceError as exc:
            self._fail(str(exc))
            time.sleep(0.05)
            return None, time.monotonic()
        if not ok:
            if self.source.finished:
                return False
            return None, stamp
        return frame, stamp

    def _step(self, worker):
        slot = self.slot
        if self.source.live and not self.frozen:
            if not self._advance_live(worker, slot):
                return False
        elif not self._advance_sequential(worker, slot):
            return False
        return self._show(worker, slot)

    def _advance_live(self, worker, slot):
        """A camera: hand over the newest frame only when the worker is free, so a result is never
        older than one inference plus one frame; show the newest frame with the newest result."""
        got = self._read()
        if got is False:
            return False
        frame, stamp = got
        if self.sink.interactive or frame is None:
            self._pace()
        self._frame, self._stamp = frame, stamp
        self._shown_name = None
        if frame is not None and slot.usable and stamp != self._submitted_stamp and worker.idle:
            self._submitted_stamp = stamp
            worker.submit(self._job(frame, stamp, slot))
        self._collect(worker, live=True)
        return True

    def _advance_sequential(self, worker, slot):
        """Files, image folders, a frozen image: every new frame is drawn with its own result.

        Depth 1: a new frame is read and prepared here and queued behind the frame before it; then
        that earlier frame's own result is awaited and it is drawn while the new one is inferred.
        With nothing earlier to draw (the first frame, a new still image) it reads once more: a
        video yields its next frame, a still image repeats, and the repeat is where its own result
        is awaited.
        Returns False at the end of a file, after its last frame has been drawn.
        """
        if self.sink.interactive:
            self._pace()
        while True:
            got = self._read()
            if got is False:
                return self._finish_inflight(worker)
            frame, stamp = got
            if frame is not None and slot.usable and stamp != self._submitted_stamp:
                job = self._job(frame, stamp, slot, prepare=True)
                self._submitted_stamp = stamp
                if job is None:  # could not be prepared (counted): skipped, the earlier frame is drawn
                    if self._finish_inflight(worker):
                        return True
                    self._result = None  # nothing earlier: this frame, drawn without a result
                    self._frame, self._stamp, self._shown_name = frame, stamp, self._source_name()
                    return True
                earlier, self._inflight = self._inflight, job
                self._queue(worker, job)  # behind the earlier frame: inference never waits for this loop
                if earlier is not None:
                    self._finish(worker, earlier)
                    return True
                continue
            if self._finish_inflight(worker):
                return True
            if not self.sink.interactive and (frame is None or stamp == self._stamp):
                self._pace()  # nothing new: redraw at the source's frame rate, not flat out
            if frame is not None or not self.frozen:
                self._frame, self._stamp, self._shown_name = frame, stamp, self._source_name()
            return True

    def _source_name(self):
        path = getattr(self.source, "current_path", None)
        return os.path.basename(path) if path and not self.frozen else None

    def _job(self, frame, stamp, slot, prepare=False):
        """A Job for ``frame``; with ``prepare`` (and a loaded runner) prepared on this thread."""
        prepared = None
        preparer = slot.preparer
        if prepare and preparer is not None:
            try:
                prepared = preparer(frame)
            except Exception as exc:  # counted like an inference failure; too many end the run
                self._fail("{}: preparing the frame: {}: {}".format(slot.module_id, type(exc).__name__, exc))
                return None
        self._seq += 1
        return Job(self._seq, frame, stamp, slot, self.frozen, prepared=prepared,
                   generation=self._generation, name=self._source_name())

    def _queue(self, worker, job):
        """Submit without dropping the job waiting before it; a hung inference ends the run meanwhile."""
        while not worker.submit(job, queue_s=0.2):
            if self._stop.is_set():
                return
            if self.notifier is not None:
                self.notifier.watchdog()
            self._check_stall(worker)

    def _finish_inflight(self, worker):
        """Wait for the frame in flight, apply its result and make it the frame shown; False if none."""
        job, self._inflight = self._inflight, None
        if job is None:
            return False
        self._finish(worker, job)
        return True

    def _finish(self, worker, job):
        self._wait(worker, job.seq)
        self._frame, self._stamp, self._shown_name = job.frame, job.stamp, job.name

    def _drop_inflight(self):
        """A key changed what is shown: the frame in flight is not drawn and its result is ignored."""
        self._inflight = None
        self._generation += 1

    def _show(self, worker, slot):
        self._check_stall(worker)
        disconnected = bool(self.source.disconnected) and not self.frozen
        if disconnected:
            self._result = None
        frame_shown = self._frame if not disconnected else None
        state = self._overlay_state(slot, disconnected)
        canvas = self.renderer.draw(frame_shown, self._current_result(), state)
        self.sink.write(canvas)
        self.frames += 1
        self._tick()
        self._report(slot, disconnected)
        key = self.keys.next_key() if self.keys is not None else self.sink.poll_key(1)
        if key:
            return self._on_key(key, worker)
        return True

    def _pace(self):
        """Sleep so that the loop does not redraw faster than the source's frame rate."""
        if self._last_tick is None:
            return
        interval = 1.0 / (self.source.fps or 15.0)
        remaining = self._last_tick + interval - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def _wait(self, worker, seq):
        while not self._stop.is_set():
            if self.notifier is not None:
                self.notifier.watchdog()
            outcome = worker.wait_for(seq, 0.2)
            if outcome is not None:
                self._apply(outcome, live=False)
                return
            if worker.gone(seq):
                return
            self._check_stall(worker)

    def _collect(self, worker, live):
        outcome = worker.take()
        if outcome is not None:
            self._apply(outcome, live)

    def _apply(self, outcome, live):
        job = outcome.job
        if outcome.slot_failed:
            job.slot.problem = "Module cannot run here: {}".format(outcome.error)
            self._log(job.slot.problem)
            return
        if outcome.error is not None:
            if not live and job.generation == self._generation:
                self._result = None  # files: this frame is drawn next, and never with another's result
            self._fail(outcome.error)
            return
        self.consecutive_failures = 0
        if job.slot is not self.slot or job.frozen != self.frozen or job.generation != self._generation:
            return  # the user switched module, freeze state or image meanwhile
        prediction = outcome.prediction
        if live and self.smoother.factor > 0:
            prediction = self._smoothed(prediction, job.slot)
        self._result = prediction
        self._result_stamp = job.stamp
        self._result_seq = job.seq
        if live and self._stamp is not None:
            self.result_ages.append(self._stamp - job.stamp)

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
        return postprocess(outputs, slot.bundle, quality=prediction.quality, backend=prediction.backend,
                           latency_ms=prediction.latency_ms)

    def _check_stall(self, worker):
        """A hung inference (or runner load) ends the run, so systemd restarts the kiosk."""
        phase, since = worker.phase, worker.phase_since
        if phase is None or since is None:
            return
        inferring = phase == "inferring"
        limit = self.inference_timeout_s if inferring else max(LOAD_TIMEOUT_S, self.inference_timeout_s)
        if time.monotonic() - since > limit:
            what = "inference" if inferring else "loading the model"
            raise KioskFailure("{} stalled for more than {:g} s. Fix: check the backend (run `medkiosk "
                               "selftest`); systemd restarts the kiosk".format(what, limit))

    def _current_result(self):
        if not self.slot.usable:
            return None
        return self._result

    def _overlay_state(self, slot, disconnected):
        message = None
        if self._message is not None:
            text, until = self._message
            if time.monotonic() < until:
                message = text
            else:
                self._message = None
        info = slot.runner_info or {}
        notices = info.get("notices") or []
        result = self._current_result()
        return OverlayState(
            module_title=slot.title, module_installed=slot.usable, module_problem=slot.problem,
            frozen=self.frozen, analysing=slot.usable and self._frame is not None and result is None,
            disconnected=disconnected, source_notice=getattr(self.source, "notice", None), message=message,
            backend=info.get("name"), precision=info.get("precision"), provider=info.get("provider"),
            fallback_reason="; ".join(notices) if notices else None, on_cpu=info.get("on_cpu", False),
            fps=self._fps, latency_ms=getattr(result, "latency_ms", None), show_keys=True, size=self.size)

    def _tick(self):
        now = time.monotonic()
        if self._last_tick is not None:
            interval = now - self._last_tick
            if interval > 0:
                fps = 1.0 / interval
                self._fps = fps if self._fps is None else 0.9 * self._fps + 0.1 * fps
        self._last_tick = now

    def _report(self, slot, disconnected):
        info = slot.runner_info
        if info is not None and slot.module_id not in self._announced:
            self._announced.add(slot.module_id)
            self._log("{}: running on {}".format(slot.module_id, info["describe"]))
            for notice in info["notices"]:
                self._log("{}: WARNING: {}".format(slot.module_id, notice))
        if self.notifier is not None:
            if not self._ready:
                self._ready = True
                self.notifier.ready("showing {} from {}".format(slot.module_id, self.source.describe()))
            self.notifier.watchdog()
            if disconnected:
                status = "camera disconnected - reconnecting"
            elif not slot.usable:
                status = "module {} not usable".format(slot.module_id)
            else:
                info = slot.runner_info or {}
                status = "{} {} on {}".format("frozen" if self.frozen else "live", slot.module_id,
                                             info.get("describe", "loading"))
            self.notifier.status(status)
        result = self._current_result()
        if self.stdout is not None and result is not None and self._result_seq != self._printed_seq:
            self._printed_seq = self._result_seq
            kind = prediction_state(result, OverlayState())
            name = self._shown_name if not self.frozen else None
            self.stdout.write(format_result_line(self.frames, slot, result, kind, name) + "\n")
            self.stdout.flush()

    # ---- keys ----
    def _on_key(self, key, worker):
        handler = KEY_HANDLERS.get(key)
        if handler is None:
            return True
        return handler(self, worker) is not False

    def _toggle_freeze(self, worker):
        self.smoother.reset()
        self._drop_inflight()
        if self.frozen:
            self.frozen = False
            self._result = None
            self._frozen_frame = None
            self._submitted_stamp = None
            return
        if self._frame is None:
            self._say("Nothing to freeze - no image yet")
            return
        self._freeze(self._frame.copy())

    def _freeze(self, image):
        self.frozen = True
        self._frozen_frame = image
        self._frozen_stamp = time.monotonic()
        self._result = None
        self._submitted_stamp = None

    def _next_module(self, worker):
        self._drop_inflight()
        self.index = (self.index + 1) % len(self.slots)
        self.smoother.reset()
        self._result = None
        self._submitted_stamp = None
        if self.frozen:
            self._frozen_stamp = time.monotonic()  # classify the frozen image with the new module
        self._say("Module: {}".format(self.slot.title))

    def _next_image(self, worker):
        self.smoother.reset()
        self._drop_inflight()
        self._result = None
        if self.source.steps_images:
            try:
                path = self.source.next_image()
            except SourceError as exc:
                self._say(str(exc))
                return
            self._submitted_stamp = None
            if path is None:
                self._say("No images to show")
            return
        if self.importer_factory is None:
            self._say("No import folder configured")
            return
        try:
            if self._importer is None:
                importer = self.importer_factory()
                importer.open()
                self._importer = importer
                path = importer.current_path  # the first F shows the first image
            else:
                path = self._importer.next_image()
        except SourceError as exc:
            self._importer = None
            self._say("No USB images: {}".format(exc))
            return
        if path is None:
            self._say(self._importer.notice or "No images on the USB stick")
            return
        _ok, image, _stamp = self._importer.read()
        self._freeze(image)
        self._say("Image {}".format(os.path.basename(path)))

    def _save_case(self, worker):
        result = self._current_result()
        frame = self._frozen_frame if self.frozen else self._frame
        if result is None or frame is None:
            self._say("Nothing to save yet")
            return
        if self.caselog_factory is None:
            self._say("Case saving is not configured")
            return
        from edge.caselog import CaseLogError

        slot = self.slot
        record = dict(result.to_dict())
        record.update({"module": slot.module_id, "module_title": slot.title, "frozen": self.frozen,
                       "source": self.source.describe(), "state": prediction_state(result, OverlayState())})
        info = slot.runner_info or {}
        try:
            if self._caselog is None:
                caselog = self.caselog_factory()
                caselog.open()
                self._caselog = caselog
            case = self._caselog.save(frame, record, slot.module_id, bundle_id=slot.bundle.bundle_id,
                                      bundle_version=slot.bundle.version, bundle_sha256=slot.bundle.sha256,
                                      backend=info.get("describe") or result.backend,
                                      precision=info.get("precision"))
        except CaseLogError as exc:
            self._say(str(exc).split(". Fix:")[0])
            self._log("case not saved: {}".format(exc))
            return
        self.cases_saved += 1
        self._say("Case saved ({})".format(case.uid))
        if self.stdout is not None:
            self.stdout.write("[{}] case saved {} -> {}\n".format(self.frames, case.uid, case.image))
            self.stdout.flush()

    def _heatmap(self, worker):
        self._say(HEATMAP_MISSING)

    def _quit(self, worker):
        if self.kiosk_mode:
            self._say("Kiosk mode: the kiosk cannot be closed from the keyboard")
            return True
        return False


KEY_HANDLERS = {
    "SPACE": Kiosk._toggle_freeze,
    "M": Kiosk._next_module,
    "F": Kiosk._next_image,
    "S": Kiosk._save_case,
    "H": Kiosk._heatmap,
    "Q": Kiosk._quit,
    "ESC": Kiosk._quit,
}
