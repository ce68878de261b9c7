"""The display thread gives way to inference (``edge.kiosk.priority``, ``[display] nice``).

Real nice values of real threads (Linux keeps them per thread); the kiosk runs on the fake camera of
the other kiosk tests (no camera on CI) with the real test bundle.
"""

import io
import os
import subprocess
import sys
import threading

import pytest

from edge.config import load_config
from edge.errors import ConfigError
from edge.kiosk import Kiosk, priority
from edge.kiosk import worker as worker_module
from edge.outputs import NullSink
from tests.edge.kiosk.kiosk_helpers import SIZE, fake_camera, hooked_opener

pytestmark = pytest.mark.skipif(not priority.supported(), reason="no per-thread nice values here")


def _in_thread(func):
    """Run ``func`` on a new thread (the test's own thread keeps its nice value) and return its result."""
    box = []
    thread = threading.Thread(target=lambda: box.append(func()))
    thread.start()
    thread.join(10)
    return box[0]


def test_lowering_changes_the_calling_thread_only():
    base = priority.thread_nice()
    seen = {}
    started = threading.Event()
    release = threading.Event()

    def earlier():  # started before the lowering: keeps its priority
        started.set()
        release.wait(10)
        seen["earlier"] = priority.thread_nice()

    def lowering():
        other = threading.Thread(target=earlier)
        other.start()
        started.wait(10)
        applied = priority.lower(3)
        seen["self"] = priority.thread_nice()
        later = threading.Thread(target=lambda: seen.__setitem__("later", priority.thread_nice()))
        later.start()
        later.join(10)
        release.set()
        other.join(10)
        return applied

    assert _in_thread(lowering) == min(3, priority.MAX_NICE - base)
    assert seen["self"] == min(base + 3, priority.MAX_NICE)
    assert seen["earlier"] == base  # the inference thread, started before, keeps its priority
    assert seen["later"] == seen["self"]  # threads it starts later (exports) inherit the lower one
    assert priority.thread_nice() == base  # and this thread never moved


def test_zero_steps_change_nothing_and_the_cap_is_nineteen():
    assert _in_thread(lambda: (priority.lower(0), priority.thread_nice())) == (0, priority.thread_nice())
    assert _in_thread(lambda: priority.lower(-2)) == 0

    def to_the_top():
        first = priority.lower(priority.MAX_NICE)
        return first, priority.lower(5), priority.thread_nice()

    first, second, nice = _in_thread(to_the_top)
    assert nice == priority.MAX_NICE and second == 0
    assert first == priority.MAX_NICE - priority.thread_nice()


def test_restore_raises_the_priority_back_where_permitted():
    def lower_then_restore():
        base = priority.thread_nice()
        applied = priority.lower(2)
        return base, applied, priority.restore(applied), priority.thread_nice()

    base, applied, restored, after = _in_thread(lower_then_restore)
    assert applied == 2
    if os.geteuid() == 0:
        assert restored is True and after == base
    else:  # an unprivileged process cannot raise a priority back
        assert restored is False and after == base + 2
    assert _in_thread(lambda: priority.restore(0)) is True


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to nobody")
def test_an_unprivileged_process_keeps_the_lower_priority():
    code = ("import os; from edge.kiosk import priority; os.setgid(65534); os.setuid(65534); "
            "b = priority.thread_nice(); a = priority.lower(2); "
            "print(a, priority.restore(a), priority.thread_nice() - b)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=root)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.decode().split() == ["2", "False", "2"]


class NiceSink(NullSink):
    """Records the nice value of the thread drawing each screen."""

    def __init__(self):
        super().__init__()
        self.nice = []

    def write(self, canvas):
        super().write(canvas)
        self.nice.append(priority.thread_nice())


def _run_kiosk(slot, synth_images, display_nice, lower=None):
    source, _factory = fake_camera(synth_images, period=0.01)
    sink = NiceSink()
    inference_nice = []
    stderr = io.StringIO()
    kiosk = Kiosk(source, sink, [slot], size=SIZE, stderr=stderr, max_frames=8, display_nice=display_nice,
                  open_classifier=hooked_opener(lambda _how: inference_nice.append(priority.thread_nice())))

    def run():
        base = priority.thread_nice()
        with source, sink:
            assert kiosk.run() == 0
        return base, priority.thread_nice()

    base, after = _in_thread(run)
    assert kiosk.failures == 0, kiosk.last_error
    return base, after, sink.nice, inference_nice, stderr.getvalue()


def test_the_kiosk_draws_below_inference_and_gives_the_priority_back(slot, synth_images):
    base, after, drawn, inferred, _log = _run_kiosk(slot, synth_images, display_nice=4)
    assert drawn and inferred
    assert set(drawn) == {min(base + 4, priority.MAX_NICE)}
    assert set(inferred) == {base}  # the inference thread, started before the display lowered itself
    assert after == (base if os.geteuid() == 0 else min(base + 4, priority.MAX_NICE))


def test_nice_zero_leaves_the_display_at_inference_priority(slot, synth_images):
    base, after, drawn, inferred, _log = _run_kiosk(slot, synth_images, display_nice=0)
    assert set(drawn) == {base} and set(inferred) == {base} and after == base


def test_a_system_that_refuses_says_so_and_the_kiosk_runs_on(slot, synth_images, monkeypatch):
    def refuse(_steps):  # setpriority refused (a seccomp or container policy): cannot be made here
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(priority, "lower", refuse)
    base, _after, drawn, _inferred, log = _run_kiosk(slot, synth_images, display_nice=5)
    assert set(drawn) == {base}
    assert "display priority unchanged" in log and "[display] nice = 0" in log


def test_the_config_default_is_five_and_bounded(tmp_path):
    assert load_config(None).display["nice"] == 5
    for value, ok in (("0", True), ("19", True), ("20", False), ("-1", False), ("2.5", False)):
        path = tmp_path / "k.conf"
        path.write_text("[display]\nnice = {}\n".format(value))
        if ok:
            assert load_config(str(path)).display["nice"] == int(value)
        else:
            with pytest.raises(ConfigError, match="nice"):
                load_config(str(path))


needs_two_cores = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                     reason="the core split needs two cores this process may use")


class CoreSink(NullSink):
    """Records the cores of the thread drawing each screen."""

    def __init__(self):
        super().__init__()
        self.cores = []

    def write(self, canvas):
        super().write(canvas)
        self.cores.append(frozenset(os.sched_getaffinity(0)))


def _split_run(slot, synth_images, cpu_split):
    """The kiosk on the fake camera; the cores of the display, prepare and inference threads as they ran."""
    source, _factory = fake_camera(synth_images, period=0.01)
    sink = CoreSink()
    inferred, prepared = [], []
    opener = hooked_opener(lambda _how: inferred.append(frozenset(os.sched_getaffinity(0))))

    def open_recording(module_slot):
        classifier = opener(module_slot)
        make_preparer = classifier.preparer

        def preparer(depth=2):
            prepare = make_preparer(depth=depth)

            def recording(image, localisation=None):
                prepared.append(frozenset(os.sched_getaffinity(0)))
                return prepare(image, localisation=localisation)

            return recording

        classifier.preparer = preparer
        return classifier

    kiosk = Kiosk(source, sink, [slot], size=SIZE, stderr=io.StringIO(), max_frames=12, cpu_split=cpu_split,
                  open_classifier=open_recording)

    def run():
        before = frozenset(os.sched_getaffinity(0))
        with source, sink:
            assert kiosk.run() == 0
        return before, frozenset(os.sched_getaffinity(0))

    before, after = _in_thread(run)
    assert kiosk.failures == 0, kiosk.last_error
    return kiosk, before, after, sink.cores, prepared, inferred


@pytest.mark.onnxruntime  # the CPU runner (the JetPack set's stand-in is a TensorRT runner)
@needs_two_cores
def test_a_cpu_runner_infers_on_cores_of_its_own_and_the_loop_keeps_the_first(slot, synth_images):
    kiosk, before, after, drawn, prepared, inferred = _split_run(slot, synth_images, cpu_split=True)
    first = frozenset(sorted(before)[:1])
    assert set(inferred) == {before - first}  # every classification off the loop's core
    assert prepared and set(prepared[1:]) == {first}  # placed once the CPU runner was known
    assert drawn[-1] == first and set(drawn) <= {first, before}
    assert after == before  # the display thread has every core again when the kiosk stops
    assert "inference on cores" in kiosk.cores.describe()


@pytest.mark.onnxruntime
@needs_two_cores
def test_a_gpu_runner_leaves_every_thread_on_every_core(slot, synth_images, monkeypatch):
    real = worker_module.runner_info  # a GPU runner (no GPU here): the runner reported as not on the CPU
    monkeypatch.setattr(worker_module, "runner_info", lambda classifier: dict(real(classifier), on_cpu=False))
    _kiosk, before, after, drawn, prepared, inferred = _split_run(slot, synth_images, cpu_split=True)
    assert set(inferred) == {before} and set(prepared) == {before} and set(drawn) == {before}
    assert after == before


@pytest.mark.onnxruntime
def test_no_split_when_off_or_on_one_core(slot, synth_images):
    _kiosk, before, after, drawn, prepared, inferred = _split_run(slot, synth_images, cpu_split=False)
    assert set(inferred) == set(prepared) == set(drawn) == {before} and after == before

    def one_core():
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # as under `taskset -c 0`
        split = priority.CoreSplit(True)
        return split.active, split.describe()

    assert _in_thread(one_core) == (False, "off")


def test_cpu_split_is_on_by_default(tmp_path):
    assert load_config(None).kiosk["cpu_split"] is True
    path = tmp_path / "k.conf"
    path.write_text("[kiosk]\ncpu_split = no\n")
    assert load_config(str(path)).kiosk["cpu_split"] is False
