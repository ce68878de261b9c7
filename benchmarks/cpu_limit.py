"""CPU limits for a benchmarked process, the way systemd applies a unit's settings.

* ``CPUQuota=P%``: a cgroup whose CFS bandwidth is P ms of CPU per 100 ms period (cgroup v2
  ``cpu.max`` = "P*1000 100000"; cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``): the
  process's threads together never get more than P% of one core, however idle the machine is.
* ``Nice=N``: the process's nice value (a weight against other runnable threads, not a cap).
* ``CPUSchedulingPolicy=idle``: ``SCHED_IDLE``, runs only on CPU time nobody else wants.

``CpuQuota`` makes a child cgroup (needs root and a writable cgroup hierarchy with the cpu
controller) and ``preexec`` moves a starting child process into it before it runs anything, so every
thread it makes is limited. Linux only.
"""

import os

from edge.errors import MedkioskError

CGROUP_ROOT = "/sys/fs/cgroup"
PERIOD_US = 100000  # systemd's CPUQuotaPeriodSec= default


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _read(path):
    with open(path) as handle:
        return handle.read()


def _v2_has_cpu(root):
    path = os.path.join(root, "cgroup.controllers")
    return os.path.isfile(path) and "cpu" in _read(path).split()


class CpuQuota(object):
    """A child cgroup limited to ``percent``% of one core (systemd ``CPUQuota=percent%``; None: no cap)
    and weighted ``weight`` (systemd ``CPUWeight=``, 100 being every other unit's; None: the default)."""

    def __init__(self, percent=None, weight=None, name=None, root=CGROUP_ROOT):
        if percent is not None and percent <= 0:
            raise MedkioskError("CPU quota {}% is not positive. Fix: give a quota above 0 (100 = one core)"
                                .format(percent))
        self.percent = None if percent is None else float(percent)
        self.weight = weight
        self.quota_us = None if percent is None else int(round(PERIOD_US * self.percent / 100.0))
        self.name = name or "medkiosk-bench-{}".format(os.getpid())
        self.root = root
        self.path = None
        self.version = None

    def __enter__(self):
        setting = []
        if _v2_has_cpu(self.root):
            self.version = 2
            self.path = os.path.join(self.root, self.name)
            if self.quota_us is not None:
                setting.append(("cpu.max", "{} {}".format(self.quota_us, PERIOD_US)))
            if self.weight is not None:
                setting.append(("cpu.weight", str(self.weight)))
        else:
            self.version = 1
            self.path = os.path.join(self.root, "cpu", self.name)
            if self.quota_us is not None:
                setting += [("cpu.cfs_period_us", str(PERIOD_US)), ("cpu.cfs_quota_us", str(self.quota_us))]
            if self.weight is not None:  # systemd's CPUWeight= on cgroup v1: shares = weight * 1024 / 100
                setting.append(("cpu.shares", str(max(2, self.weight * 1024 // 100))))
        try:
            os.mkdir(self.path)
            for name, value in setting:
                _write(os.path.join(self.path, name), value)
        except OSError as exc:
            raise MedkioskError("cannot make the CPU-limited cgroup {}: {}. Fix: run as root on a machine "
                                "whose cgroup cpu controller is writable (or measure under systemd with "
                                "CPUQuota=)".format(self.path, exc)) from exc
        return self

    def preexec(self):
        """Called in a child process before exec: move it (and so all its future threads) into the group."""
        _write(os.path.join(self.path, "cgroup.procs"), str(os.getpid()))

    def stats(self):
        """The kernel's throttling counters of the group (cpu.stat) as a dict of integers."""
        stats = {}
        for line in _read(os.path.join(self.path, "cpu.stat")).splitlines():
            key, _sep, value = line.partition(" ")
            if value.strip().isdigit():
                stats[key] = int(value)
        return stats

    def setting(self):
        return {"kind": "cpu_quota", "percent": self.percent, "weight": self.weight,
                "cgroup_version": self.version, "quota_us": self.quota_us, "period_us": PERIOD_US}

    def __exit__(self, *exc):
        if self.path and os.path.isdir(self.path):
            os.rmdir(self.path)  # empty once the limited process has exited
        return False


def preexec_for(nice=0, sched_idle=False, quota=None):
    """A ``preexec_fn`` applying the unit-like settings to a child process (None when there are none)."""
    if not nice and not sched_idle and quota is None:
        return None

    def apply():
        if quota is not None:
            quota.preexec()
        if nice:
            os.nice(nice)
        if sched_idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    return apply
