"""Temporal smoothing of live probabilities (exponential moving average).

A hand-held camera makes per-frame probabilities flicker; the live view shows
``smoothed = factor * previous + (1 - factor) * new``. The average restarts whenever what is being
looked at changes meaning: another module, a freeze, a new imported image.
"""


class ProbabilitySmoother(object):
    """EMA of probability vectors keyed by module; ``factor`` 0 turns smoothing off."""

    def __init__(self, factor):
        factor = float(factor)
        if not 0.0 <= factor < 1.0:
            raise ValueError("smoothing factor must be in [0, 1), got {}".format(factor))
        self.factor = factor
        self._key = None
        self._state = None

    def reset(self):
        self._key = None
        self._state = None

    def update(self, probabilities, key=None):
        """Return the smoothed probabilities (a new list) after adding one observation."""
        values = [float(p) for p in probabilities]
        if self.factor == 0.0 or self._state is None or key != self._key or len(values) != len(self._state):
            self._key = key
            self._state = values
            return list(values)
        keep = self.factor
        self._state = [keep * old + (1.0 - keep) * new for old, new in zip(self._state, values)]
        return list(self._state)
