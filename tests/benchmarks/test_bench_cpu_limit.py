"""The CPU limits serve_load applies like systemd: a cgroup with CPUQuota= and CPUWeight=, for real.

Needs root and a writable cgroup cpu controller (this machine has cgroup v1's); skipped elsewhere.
"""

import os
import subprocess
import sys
import time

import pytest

from benchmarks import serve_load
from benchmarks.cpu_limit import CGROUP_ROOT, CpuQuota, preexec_for
from edge.errors import MedkioskError

SPIN = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end:\n    pass\n"


def _writable():
    try:
        with CpuQuota(50, name="medkiosk-test-probe-{}".format(os.getpid())):
            return True
    except MedkioskError:
        return False


needs_cgroups = pytest.mark.skipif(not _writable(), reason="no writable cgroup cpu controller here (root)")


def _cpu_of_spinning_child(preexec):
    process = subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=preexec)
    _pid, _status, usage = os.wait4(process.pid, 0)
    return usage.ru_utime + usage.ru_stime


@needs_cgroups
def test_a_quota_caps_a_busy_process_at_its_share_of_one_core():
    with CpuQuota(5, weight=20, name="medkiosk-test-{}".format(os.getpid())) as quota:
        assert quota.setting()["quota_us"] == 5000
        if quota.version == 1:
            with open(os.path.join(quota.path, "cpu.shares")) as handle:
                assert handle.read().strip() == "204"  # systemd's CPUWeight=20 on cgroup v1
        started = time.monotonic()
        cpu = _cpu_of_spinning_child(preexec_for(quota=quota))
        wall = time.monotonic() - started
        stats = quota.stats()
    # 5 ms per 100 ms period at most (a spinning process unlimited gets far more, even on a busy machine).
    assert cpu <= 0.05 * wall + 0.05, (cpu, wall)
    assert stats["nr_periods"] > 0
    assert not os.path.isdir(quota.path)  # removed on exit


def test_a_quota_that_cannot_be_made_says_how_to_fix_it(tmp_path):
    with pytest.raises(MedkioskError, match="Fix: run as root"), CpuQuota(50, root=str(tmp_path / "none")):
        pass
    with pytest.raises(MedkioskError, match="not positive"):
        CpuQuota(0)
    assert preexec_for() is None and CGROUP_ROOT == "/sys/fs/cgroup"


def test_load_section_names_the_limits_and_the_kiosk_frame_rate_kept():
    result = {"title": "t", "command": "python benchmarks/serve_load.py", "clients": 8,
              "requests_per_client": 200, "module": "chest", "http_threads": 4, "cpu_threads": 1,
              "kiosk_frames": 150, "requests": 1600,
              "errors": 0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "throughput_rps": 9.5,
              "rss_idle_mb": 1, "rss_after_first_tenth_mb": 2, "rss_end_mb": 2, "rss_peak_mb": 2,
              "kiosk_fps_idle": 20.0, "kiosk_fps_busy": 15.0, "kiosk_fps_idle_runs": [20.0, 20.0],
              "kiosk_fps_busy_runs": [15.0],
              "limits": {"nice": 10, "cpu_weight": 20, "cpu_quota_percent": 50.0},
              "service_cgroup": {"cgroup_version": 1},
              "cgroup_cpu_stat_during_load": {"nr_periods": 10, "nr_throttled": 4},
              "environment": {"date": "d", "cpu": "c", "machine": "m", "cpu_count": 2,
                              "load_average": [1, 1, 1], "python": "3"}}
    text = serve_load.render_markdown(result)
    assert "| service limits (as in its systemd unit) | Nice=10 + CPUWeight=20 + CPUQuota=50% |" in text
    assert "| kiosk frame rate kept under the load | **75%** |" in text
    assert "4 of 10 periods throttled" in text
