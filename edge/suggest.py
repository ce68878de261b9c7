"""Cross-module refusal with a suggestion: "this looks like an image for the other module".

When the active module's input check refuses an image (``Prediction.out_of_scope``), the input
checks of the other installed modules look at the same image; the one whose check accepts it
(``ood_score <= threshold``, lowest ``score / threshold`` when several do) is suggested, and the
kiosk's M key switches straight to it. Rules:

* only on refusal: an accepted image costs nothing extra; a refused one costs one inference per
  other module with an input check (their runners open on the first refusal, not before);
* a module without an input check is never suggested: nothing says the image is its kind
  (a skin module is never offered for an X-ray unless its own check accepts the X-ray);
* the same prepared batch is reused when the other module takes the same input and finds the
  X-ray the same way; otherwise the image is prepared again for it (same localisation).
"""

from edge.classify import localises, prepare


class Candidate(object):
    """Another installed module: its bundle, and ``open()`` -> its loaded Classifier (called lazily)."""

    def __init__(self, bundle, opener):
        self.bundle = bundle
        self._opener = opener
        self._classifier = None

    @property
    def module_id(self):
        return self.bundle.module_id

    def classifier(self):
        if self._classifier is None:
            self._classifier = self._opener()
        return self._classifier

    def close(self):
        """Release the classifier if ``open()`` made one (the caller owns it then)."""
        if self._classifier is not None and hasattr(self._classifier, "__exit__"):
            self._classifier.__exit__(None, None, None)
        self._classifier = None


def _same_preparation(bundle, other):
    return bundle.description.input == other.description.input and localises(bundle) == localises(other)


def check_score(candidate, image_bgr, bundle, prepared=None, localisation=None):
    """The candidate's ``ood_score / threshold`` for the image (<= 1: its input check accepts it)."""
    other = candidate.bundle
    threshold = float(other.description.input_check["threshold"])
    if prepared is not None and _same_preparation(bundle, other):
        batch = prepared.batch
    else:
        batch = prepare(image_bgr, other, localisation=localisation).batch
    score = float(candidate.classifier().runner.infer(batch)["ood_score"].reshape(-1)[0])
    return score / threshold if threshold > 0 else (0.0 if score <= 0 else float("inf"))


def suggest_module(prediction, image_bgr, bundle, candidates, prepared=None):
    """Set ``prediction.suggested_module``/``suggested_title`` from the candidates; return the id or None.

    ``bundle``: the module that refused. Does nothing unless the prediction is out of scope.
    """
    if not prediction.out_of_scope:
        return None
    best = None
    for candidate in candidates:
        other = candidate.bundle
        if other.module_id == bundle.module_id or not other.description.input_check:
            continue
        ratio = check_score(candidate, image_bgr, bundle, prepared, prediction.localisation)
        if ratio <= 1.0 and (best is None or ratio < best[0]):
            best = (ratio, other)
    if best is None:
        return None
    prediction.suggested_module = best[1].module_id
    prediction.suggested_title = best[1].title
    return prediction.suggested_module

