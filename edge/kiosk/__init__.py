"""The kiosk: camera or USB images -> top-3 findings on the screen.

Where things are:

* ``loop``: ``Kiosk``, the loop itself (capture -> locate -> classify -> overlay -> render).
* ``modules``: the module set (discovery of installed bundles, slots, M to switch) and the
  classifier opener that checks each bundle's golden images when its runner is loaded.
* ``worker``: the inference thread (``InferenceWorker``) and the jobs it runs.
* ``pipeline``: the depth-1 file pipeline (every frame of a video or folder with its own result).
* ``keys``, ``screen``, ``health``, ``report``: key handlers, what is on screen, failure
  counting, and the journal/stdout/systemd lines.
"""

from edge.kiosk.health import LOAD_TIMEOUT_S, KioskFailure
from edge.kiosk.keys import HEATMAP_MISSING, KEY_HANDLERS
from edge.kiosk.loop import Kiosk, locate_whole_frame
from edge.kiosk.modules import (
                                ModuleSet,
                                ModuleSlot,
                                check_golden,
                                default_classifier_opener,
                                discover_modules,
)
from edge.kiosk.pipeline import FilePipeline
from edge.kiosk.report import format_result_line
from edge.kiosk.screen import MESSAGE_SECONDS
from edge.kiosk.worker import InferenceWorker, Job, Outcome, runner_info

__all__ = [
    "HEATMAP_MISSING", "KEY_HANDLERS", "LOAD_TIMEOUT_S", "MESSAGE_SECONDS", "FilePipeline", "InferenceWorker",
    "Job", "Kiosk", "KioskFailure", "ModuleSet", "ModuleSlot", "Outcome", "check_golden",
    "default_classifier_opener", "discover_modules", "format_result_line", "locate_whole_frame",
    "runner_info",
]
