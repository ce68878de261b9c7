"""What the kiosk tells the outside: journal lines, systemd status, one stdout line per new result."""

from edge.console import printable
from edge.overlay import OverlayState, prediction_state


def format_result_line(frame_number, slot, prediction, kind, image_name=None):
    """The one line printed per new result in headless mode (``image_name``: a still image's file)."""
    head = "[{}] {}".format(frame_number, slot.module_id)
    if image_name:
        head += " {}:".format(printable(image_name))
    if kind == "quality":
        return "{}  IMAGE QUALITY: {}".format(head, prediction.quality.message)
    if kind == "out_of_scope":
        suggestion = prediction.suggestion_line() if getattr(prediction, "suggested_module", None) else None
        return "{}  OUT OF SCOPE: {}{}".format(head, prediction.out_of_scope_message,
                                               " - {}".format(suggestion) if suggestion else "")
    # As the screen shows it: a percentage for a calibrated, confident result, else likelihood words.
    top = " | ".join("{} {}".format(name, prediction.value_text(p, "{:.1%}")) for name, p in prediction.top3)
    flag = "  UNCERTAIN" if kind == "uncertain" else ""
    latency = "" if prediction.latency_ms is None else ", {:.1f} ms".format(prediction.latency_ms)
    return "{}  {}{}  ({}{})".format(head, top, flag, prediction.backend, latency)


class Reporter(object):
    """Journal (stderr), sd_notify and the headless stdout lines."""

    def __init__(self, stderr, stdout=None, notifier=None):
        self.stderr = stderr
        self.stdout = stdout
        self.notifier = notifier
        self._announced = set()
        self._ready = False
        self._printed_seq = None

    def log(self, text):
        self.stderr.write("medkiosk: {}\n".format(text))
        self.stderr.flush()

    def watchdog(self):
        if self.notifier is not None:
            self.notifier.watchdog()

    def module_problems(self, problems):
        """One journal line per module that cannot run (damaged, duplicate, not installed)."""
        for module_id, problem in problems:
            self.log("module {} disabled: {}".format(module_id, problem))

    def announce(self, slot):
        info = slot.runner_info
        if info is None or slot.module_id in self._announced:
            return
        self._announced.add(slot.module_id)
        self.log("{}: running on {}".format(slot.module_id, info["describe"]))
        for notice in info["notices"]:
            self.log("{}: WARNING: {}".format(slot.module_id, notice))

    def status(self, slot, source, frozen, disconnected):
        if self.notifier is None:
            return
        if not self._ready:
            self._ready = True
            self.notifier.ready("showing {} from {}".format(slot.module_id, source.describe()))
        self.notifier.watchdog()
        if disconnected:
            status = "camera disconnected - reconnecting"
        elif not slot.usable:
            status = "module {} not usable".format(slot.module_id)
        else:
            info = slot.runner_info or {}
            status = "{} {} on {}".format("frozen" if frozen else "live", slot.module_id,
                                         info.get("describe", "loading"))
        self.notifier.status(status)

    def result(self, frames, slot, result, seq, name):
        """Print a headless line for a result not printed yet."""
        if self.stdout is None or result is None or seq == self._printed_seq:
            return
        self._printed_seq = seq
        kind = prediction_state(result, OverlayState())
        self.stdout.write(format_result_line(frames, slot, result, kind, name) + "\n")
        self.stdout.flush()

    def line(self, text):
        if self.stdout is not None:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def stopping(self, frames):
        if self.notifier is not None:
            self.notifier.stopping("stopped after {} frames".format(frames))
