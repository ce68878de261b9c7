"""Live mode with a camera faster and slower than inference (fake camera: no V4L2 device on CI).

The newest frame is always posted (the worker takes the newest and drops stale ones), so
inference never waits for the display; the display wakes when a result lands, so a frame is
drawn with its own result when inference is faster than the camera.
"""

import time

import pytest

from tests.edge.kiosk.kiosk_helpers import fake_camera, hooked_opener, run_kiosk


def test_a_camera_faster_than_inference_keeps_the_worker_busy(tmp_path, slot, synth_images):
    """Inference (slowed to 80 ms, a stand-in for a slow model) behind a 50 fps camera: every frame
    is posted, stale ones are replaced while the worker is busy (the old loop posted only when it
    found the worker idle, so it never replaced one), and each result comes from a newer frame."""
    source, _factory = fake_camera(synth_images, period=0.02)
    calls = []

    def slow(_how):
        calls.append(time.monotonic())
        time.sleep(0.08)

    kiosk, lines, _frames = run_kiosk(tmp_path, source, [slot], max_frames=60,
                                      open_classifier=hooked_opener(slow))
    assert kiosk.failures == 0 and len(calls) >= 3
    assert kiosk.worker.dropped > 0, "no stale frame was ever replaced: frames are not posted while busy"
    # Each result is of a frame newer than the one before it (the newest waiting, never a queue).
    assert len([line for line in lines if line.startswith("[")]) >= 2


@pytest.mark.onnxruntime
def test_the_display_wakes_when_a_result_lands(tmp_path, slot, synth_images):
    """A slow camera (0.15 s a frame) and fast inference: the frame is drawn with its own result,
    not with the previous frame's until the next frame arrives (the result's frame age is 0)."""
    source, _factory = fake_camera(synth_images, period=0.15)
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot], max_frames=14)
    ages = kiosk.result_ages[1:]  # the first result waits for the runner to load
    assert ages, "no live result"
    own = [age for age in ages if age == 0]
    assert len(own) >= len(ages) // 2, ages
