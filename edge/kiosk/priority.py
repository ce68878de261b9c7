"""The display thread gives way to inference: a lower CPU priority for the calling thread only, and
a CPU runner's inference thread on cores of its own (``CoreSplit``).

On a CPU backend (and on a Nano's four slow ARM cores) the display thread - camera frames located,
overlays drawn - competes with the inference thread for the cores; when both want a core, the result
the health worker waits for should win, and a screen drawn a few milliseconds later costs nothing.
Linux keeps the nice value per thread (NPTL: ``setpriority(PRIO_PROCESS, 0, ...)`` changes the calling
thread), so the threads started before it (camera grabber, inference, prepare) keep their priority;
threads it starts later (exports) inherit the lower one. An unprivileged process may lower a thread's
priority but not raise it back, so ``restore`` reports whether it could.
"""

import os
import threading

MAX_NICE = 19


def supported():
    """True where a thread's nice value can be read and set (Linux; not on other systems)."""
    return hasattr(os, "setpriority") and hasattr(os, "getpriority")


def thread_nice():
    """The calling thread's nice value."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def lower(steps):
    """Lower the calling thread's priority by ``steps`` nice levels (capped at 19); return the levels
    actually applied (0 when ``steps`` is 0 or the system cannot). OSError passes on to the caller."""
    if steps <= 0 or not supported():
        return 0
    before = thread_nice()
    os.setpriority(os.PRIO_PROCESS, 0, min(MAX_NICE, before + int(steps)))
    return thread_nice() - before


def restore(applied):
    """Undo ``lower``'s ``applied`` levels on the calling thread; False when not permitted (an
    unprivileged process cannot raise a priority back: the thread keeps the lower one)."""
    if applied <= 0:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, 0, thread_nice() - applied)
    except PermissionError:
        return False
    return True


class CoreSplit(object):
    """A CPU runner's inference thread on cores of its own, the loop's threads beside it.

    ``[kiosk] cpu_threads = auto`` sizes a CPU runner for all cores but one, leaving one to the
    camera and display loop; this makes it so: the inference thread is placed on the other cores
    before it opens a runner (ONNX Runtime's pool threads, made then, inherit them) and the loop's
    threads (display, prepare) on the first core once the runner is known to run on the CPU.
    Measured (docs/benchmarks.md, 2 cores, camera at 120 fps): floating threads preempted inference
    and slowed it; split, the loop no longer takes its core. A GPU runner mostly waits for the GPU,
    so then every thread may use every core again. Off with fewer than two cores (``taskset -c 0``).
    """

    def __init__(self, enabled=True):
        allowed = sorted(os.sched_getaffinity(0)) if enabled and hasattr(os, "sched_getaffinity") else []
        self.active = len(allowed) >= 2
        self.all = set(allowed)
        self.loop = set(allowed[:1])
        self.inference = set(allowed[1:])
        self._placed = threading.local()

    def describe(self):
        if not self.active:
            return "off"
        return "inference on cores {}, camera and display loop on core {}".format(
            ",".join(str(core) for core in sorted(self.inference)), ",".join(str(core) for core in self.loop))

    def before_open(self):
        """(the inference thread) Place it on the inference cores before a runner is opened."""
        self._place(self.inference)

    def after_open(self, on_cpu):
        """(the inference thread) A runner on the GPU: give it every core back."""
        self._place(self.inference if on_cpu else self.all)

    def place_loop_thread(self, on_cpu):
        """(a loop thread) The first core while the current runner runs on the CPU, else every core;
        ``on_cpu`` None (no runner yet): unchanged."""
        if on_cpu is not None:
            self._place(self.loop if on_cpu else self.all)

    def restore(self):
        """Every core again for the calling thread (the kiosk's display thread when it stops)."""
        self._place(self.all)

    def _place(self, cores):
        if not self.active or getattr(self._placed, "cores", None) == cores:
            return
        os.sched_setaffinity(0, cores)  # 0: the calling thread (Linux keeps affinity per thread)
        self._placed.cores = cores
