"""The service's one code path to the kiosk's parts: its module discovery, classifier opener,
quality thresholds and case log (``edge.kiosk``, ``edge.classify``, ``edge.caselog``).

Each module's classifier is loaded once; the whole service runs one inference at a time (one lock
shared by the modules), so however many devices send images it takes at most ``cpu_threads`` of
inference beside the kiosk. A result waits here (for ``RESULT_SECONDS``, for the device that asked)
until it is saved.
"""

import collections
import os
import secrets
import threading
import time

from edge.serve.errors import ServeError
from edge.serve.upload import decode_upload
from edge.serve.wording import screen_view

AUTO = "auto"
RESULT_SECONDS = 15 * 60
MAX_RESULTS = 64
SCRATCH_DIR = os.path.join("serve", "uploads")


class Module(object):
    """A usable module: its slot (bundle) and loaded classifier, used under the service's ``lock``."""

    def __init__(self, slot, classifier, lock):
        self.slot = slot
        self.classifier = classifier
        self.lock = lock

    def classify(self, image):
        with self.lock:
            return self.classifier.classify(image)


class Service(object):
    """Loaded modules + case log for the HTTP layer; ``open()`` loads, ``close()`` releases."""

    def __init__(self, settings, clock=time.monotonic):
        self.settings = settings
        self.clock = clock
        self.slots = []
        self.modules = collections.OrderedDict()
        self._results = collections.OrderedDict()
        self._results_lock = threading.Lock()
        self._cases_lock = threading.Lock()
        self._inference_lock = threading.Lock()

    def open(self):
        from edge.kiosk import default_classifier_opener, discover_modules

        settings = self.settings
        self.slots, _start = discover_modules(settings.models_dir, settings.modules)
        opener = default_classifier_opener(settings.backend, settings.precision, settings.engine_cache,
                                           settings.quality, threads=settings.cpu_threads)
        for slot in self.slots:
            if slot.usable:
                self.modules[slot.module_id] = Module(slot, opener(slot), self._inference_lock)
        return self

    def close(self):
        for module in self.modules.values():
            module.classifier.__exit__(None, None, None)
        self.modules.clear()

    def describe_modules(self):
        return [{"id": slot.module_id, "title": slot.title, "installed": slot.module_id in self.modules,
                 "problem": slot.problem,
                 "version": slot.bundle.version if slot.bundle is not None else None}
                for slot in self.slots]

    def readiness(self):
        """(ready, details): at least one module loaded and the case log's folder writable."""
        state_dir = self.settings.state_dir
        writable = os.path.isdir(state_dir) and os.access(state_dir, os.W_OK)
        return bool(self.modules) and writable, {"modules_loaded": list(self.modules),
                                                 "case_log_writable": writable}

    def _module(self, module_id):
        module = self.modules.get(module_id)
        if module is None:
            known = ", ".join(self.modules) or "none"
            raise ServeError("module {!r} is not installed on this unit. Fix: choose one of: {} (or "
                             "{})".format(module_id, known, AUTO), status=404, code="unknown_module")
        return module

    def classify(self, data, module_id, owner):
        """Uploaded bytes -> the result document (wording as on the screen) with a ``result_id``."""
        settings = self.settings
        image = decode_upload(data, os.path.join(settings.state_dir, SCRATCH_DIR), settings.max_upload_bytes,
                              settings.max_pixels)
        suggested = module_id in (None, "", AUTO)
        if suggested:
            if not self.modules:
                self._module(AUTO)
            module, prediction = self._suggest(image)
        else:
            module = self._module(module_id)
            prediction = module.classify(image)
            self._offer_others(prediction, image, module)
        view = screen_view(prediction, module.slot.title)
        result_id = self._keep(image, prediction, module, owner, view["state"])
        return {"result_id": result_id, "module": module.slot.module_id, "module_title": module.slot.title,
                "suggested": suggested, "view": view, "notes": prediction.notes(),
                "prediction": prediction.to_dict()}

    def _offer_others(self, prediction, image, module):
        """A refused image: name another loaded module whose input check accepts it (edge.suggest)."""
        if not prediction.out_of_scope:
            return
        from edge.suggest import Candidate, suggest_module

        others = [Candidate(m.slot.bundle, lambda m=m: m.classifier) for m in self.modules.values()
                  if m is not module]
        with self._inference_lock:
            suggest_module(prediction, image, module.slot.bundle, others)

    def _suggest(self, image):
        """The first module (config order) whose input check and quality gate accept the image."""
        first = None
        for module in self.modules.values():
            prediction = module.classify(image)
            first = first or (module, prediction)
            if not prediction.out_of_scope and (prediction.quality is None or prediction.quality.ok):
                return module, prediction
        return first

    def _keep(self, image, prediction, module, owner, state):
        result_id = secrets.token_urlsafe(12)
        now = self.clock()
        with self._results_lock:
            for key in [k for k, v in self._results.items() if now - v["at"] > RESULT_SECONDS]:
                del self._results[key]
            while len(self._results) >= MAX_RESULTS:
                self._results.popitem(last=False)
            self._results[result_id] = {"image": image, "prediction": prediction, "module": module,
                                        "owner": owner, "state": state, "at": now}
        return result_id

    def save(self, result_id, owner):
        """Save a kept result as a case (the kiosk's record layout); return the case summary."""
        from edge.caselog import CaseLogError

        with self._results_lock:
            kept = self._results.get(result_id)
            if kept is None or kept["owner"] != owner or self.clock() - kept["at"] > RESULT_SECONDS:
                raise ServeError("no result {!r} to save (expired after {} minutes, or from another "
                                 "device). Fix: classify the image again, then save".format(
                                     result_id, RESULT_SECONDS // 60), status=404, code="unknown_result")
            del self._results[result_id]
        prediction, module = kept["prediction"], kept["module"]
        slot = module.slot
        record = dict(prediction.to_dict())
        record.update({"module": slot.module_id, "module_title": slot.title, "frozen": True,
                       "source": "serve", "state": kept["state"]})
        try:
            with self._cases_lock, self._log() as log:
                case = log.save(kept["image"], record, slot.module_id, bundle_id=slot.bundle.bundle_id,
                                bundle_version=slot.bundle.version, bundle_sha256=slot.bundle.sha256,
                                backend=prediction.backend, precision=self.settings.precision)
        except CaseLogError as exc:
            raise ServeError(str(exc), status=507, code="not_saved") from exc
        return case_summary(case)

    def _log(self):
        from edge.caselog import CaseLog

        return CaseLog(self.settings.state_dir, min_free_mb=self.settings.min_free_mb)

    def cases(self):
        from edge.caselog import CaseLogError

        log = self._log()
        try:
            with self._cases_lock:
                log.open(create=False)
                return [case_summary(record) for record in log.cases()]
        except CaseLogError:
            if not os.path.isfile(log.db_path):
                return []
            raise
        finally:
            log.close()

    def case(self, uid):
        """(summary with its result, image path) of one case; 404 when there is none."""
        log = self._log()
        try:
            with self._cases_lock:
                record = log.open(create=True).get(uid)
        finally:
            log.close()
        if record is None:
            raise ServeError("no case {!r} on this unit. Fix: list the cases with GET /api/v1/cases".format(
                uid), status=404, code="unknown_case")
        summary = case_summary(record)
        summary["result"] = record.result
        return summary, record.image


    def referral(self, uid):
        """PDF bytes of one case's referral sheet (``edge.serve.referral``)."""
        from edge.preprocess import load_image, resize_to_input
        from edge.serve.referral import referral_pdf

        summary, image_path = self.case(uid)
        image = load_image(image_path)
        module = self.modules.get(summary["module"])
        analysed = None
        if module is not None and module.slot.bundle.bundle_id == summary["bundle_id"]:
            analysed = resize_to_input(image, module.slot.bundle.description.input)
        return referral_pdf(summary, summary["result"], image, analysed)


def case_summary(record):
    """A saved case for the API: no image path, no file names."""
    return {"id": record.uid, "created_utc": record.created_utc, "module": record.module,
            "bundle_id": record.bundle_id, "top1": record.top1, "top1_probability": record.top1_probability,
            "uncertain": bool(record.uncertain), "out_of_scope": bool(record.out_of_scope),
            "quality_ok": bool(record.quality_ok)}
