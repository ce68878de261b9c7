"""The display thread gives way to inference: a lower CPU priority for the calling thread only.

On a CPU backend (and on a Nano's four slow ARM cores) the display thread - camera frames located,
overlays drawn - competes with the inference thread for the cores; when both want a core, the result
the health worker waits for should win, and a screen drawn a few milliseconds later costs nothing.
Linux keeps the nice value per thread (NPTL: ``setpriority(PRIO_PROCESS, 0, ...)`` changes the calling
thread), so the threads started before it (camera grabber, inference, prepare) keep their priority;
threads it starts later (exports) inherit the lower one. An unprivileged process may lower a thread's
priority but not raise it back, so ``restore`` reports whether it could.
"""

import os

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
