"""benchmarks/pipeline.py runs the real kiosk loop on a tiny bundle and video and writes JSON + markdown.

Not a timing test: it checks that every stage of the real loop was measured, that the numbers are
consistent with each other (stage counts, ratios computed from the same run) and that the document
is regenerated. The live mode's CSI camera is emulated (no camera exists here).
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import pipeline
from benchmarks.common import ROOT
from benchmarks.pipeline_summary import LOCALISED_STAGES

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def outcome(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-pipeline")
    out = folder / "results" / "pipeline.json"
    code = pipeline.main(["--quick", "--profile", "--bundle", tiny_bundle, "--out-json", str(out),
                          "--doc", str(folder / "benchmarks.md")])
    assert code == 0
    return json.loads(out.read_text()), (folder / "benchmarks.md").read_text()


def test_every_stage_of_the_real_loop_is_timed(outcome):
    result, _doc = outcome
    settings = result["settings"]
    stages = result["file_mode"]["stages"]
    steady_frames = (settings["frames"] - settings["skip"]) * settings["blocks"]
    for key, _label in pipeline.STAGES:
        if key in LOCALISED_STAGES:  # the tiny bundle is no X-ray module: nothing is located
            assert stages[key]["n"] == 0, key
            continue
        # The pipeline reads, prepares and submits one frame beyond the last one drawn.
        assert steady_frames <= stages[key]["n"] <= steady_frames + settings["blocks"], key
        assert stages[key]["median_ms"] >= 0
    for key in ("overlay", "sink"):
        assert stages[key]["n"] == steady_frames
    # Each stage is attributed to the thread that ran it: the display thread decodes, prepares and
    # draws; the inference thread only infers and postprocesses (the first frame aside).
    fm = result["file_mode"]
    display = ("capture", "preprocess", "quality", "overlay", "sink")
    expected = dict({stage: "display" for stage in display + ("prepare",)},
                    inference="inference", postprocess="inference", classify="inference")
    assert fm["stage_threads"] == expected
    means = fm["stage_mean_ms"]
    assert sorted(means) == sorted(key for key, _ in pipeline.STAGES)
    # Each thread's own work for the frames shown fits in those frames' time.
    busy = fm["thread_busy_mean_ms"]
    assert set(busy) == {"display", "inference"}
    for name, value in busy.items():
        assert 0 < value < fm["mean_frame_ms"] * 1.05, name


def test_an_x_ray_module_times_its_localisation_on_the_display_thread(tmp_path):
    """The shipped chest module locates each frame (edge.locate): its own stage, before preprocess."""
    out = tmp_path / "pipeline.json"
    code = pipeline.main(["--quick", "--bundle", os.path.join(ROOT, "models", "chest"), "--live-frames", "0",
                          "--out-json", str(out), "--doc", str(tmp_path / "benchmarks.md")])
    assert code == 0
    result = json.loads(out.read_text())
    settings, fm = result["settings"], result["file_mode"]
    steady_frames = (settings["frames"] - settings["skip"]) * settings["blocks"]
    assert steady_frames <= fm["stages"]["locate"]["n"] <= steady_frames + settings["blocks"]
    assert fm["stage_threads"]["locate"] == "display"
    assert 0 < fm["stage_mean_ms"]["locate"] < fm["thread_busy_mean_ms"]["display"]
    assert "locate the X-ray" in (tmp_path / "benchmarks.md").read_text()


def test_the_median_run_is_the_middle_ratio_and_the_upper_middle_of_an_even_count():
    runs = [{"ratio": 0.9}, {"ratio": None}, {"ratio": 0.7}, {"ratio": 0.8}]
    assert pipeline.median_run(runs[:1])["ratio"] == 0.9
    assert pipeline.median_run([runs[0], runs[2], runs[3]])["ratio"] == 0.8
    assert pipeline.median_run(runs)["ratio"] == 0.8  # None (no result) ranks lowest: [None, .7, .8, .9]


def test_ratio_is_end_to_end_over_raw_from_the_same_blocks(outcome):
    result, _doc = outcome
    fm = result["file_mode"]
    assert 0 < fm["inference_cpu_share_median"] < 1  # inference's share of the process's frame CPU
    assert len(fm["blocks"]) == result["settings"]["blocks"]
    for block in fm["blocks"]:
        assert block["ratio"] == pytest.approx(block["end_to_end_fps"] / block["raw_inference_fps"])
        assert block["frames"] == result["settings"]["frames"]
        assert block["ratio_all_cores"] == pytest.approx(block["end_to_end_fps"] / block["raw_all_cores_fps"])
    assert fm["raw_all_cores"]["n"] == result["settings"]["raw_runs"] * result["settings"]["blocks"]
    assert fm["raw_inference"]["n"] == result["settings"]["raw_runs"] * result["settings"]["blocks"]
    assert result["goals"]["file_mode_ratio_ok"] == (fm["ratio_median"] >= pipeline.RATIO_GOAL)
    assert result["runner"]["provider"] == "CPUExecutionProvider"
    # The video shows the bundle's own golden images, so the loop draws real results, not "out of scope".
    assert result["video"] == "640x480 MJPG video of the bundle's 4 golden images"


def test_live_mode_reports_rates_and_result_ages(outcome):
    result, _doc = outcome
    live = result["live_mode"]
    assert live["frames_displayed"] == result["settings"]["live_frames"]
    # The ceiling's raw rate is measured just before and after the live run (same machine load).
    around = live["raw_inference_around"]
    assert around["n"] == 2 * result["settings"]["raw_runs"]
    # ... as a back-to-back rate (count / total time = 1 / the mean), as file mode's blocks measure it
    assert live["results_ceiling_fps"] == pytest.approx(min(1000.0 / around["mean_ms"], live["camera_fps"]))
    assert live["ratio"] == pytest.approx(live["results_fps"] / live["results_ceiling_fps"])
    by_median = live["results_fps"] / min(1000.0 / around["median_ms"], live["camera_fps"])
    assert live["ratio_vs_raw_median"] == pytest.approx(by_median)
    reported = live["ratio_blocks"].index(live["ratio"])
    assert live["ratio_vs_raw_median_blocks"][reported] == pytest.approx(by_median)
    # Several live runs, each between raw blocks; the one reported is the median run.
    blocks = live["ratio_blocks"]
    assert len(blocks) == result["settings"]["live_blocks"] == 2 and live["ratio"] in blocks
    assert live["ratio"] == max(blocks)  # two runs: the upper middle one
    assert live["display_fps"] > 0 and live["results_fps"] > 0
    assert live["result_age"]["n"] > 0
    assert live["age_ok"] == (live["age_beyond_inference"]["max_ms"] <= live["age_bound_ms"])
    assert live["age_bound_ms"] == pytest.approx(1000.0 / result["settings"]["camera_fps"])
    assert live["age_beyond_inference"]["n"] == live["result_age"]["n"]
    assert 0 < live["worker_busy_fraction"] <= 1
    assert live["worker_call"]["n"] == live["worker_idle"]["n"] + 1
    # CPU time per thread (RUSAGE_THREAD), the stand-in for the Nano's slow cores on a taskset run.
    cpu = live["thread_cpu"]
    assert cpu["display_cpu_s"] > 0 and cpu["inference_cpu_s"] > 0
    # Live frames are prepared on the worker's prepare thread, not on the inference thread.
    assert cpu["prepare_cpu_s"] > 0 and live["stages"]["prepare"]["n"] > 0
    assert cpu["display_cpu_s"] + cpu["prepare_cpu_s"] + cpu["inference_cpu_s"] <= cpu["process_cpu_s"] * 1.05
    assert cpu["display_share_of_wall"] == pytest.approx(cpu["display_cpu_s"] / cpu["wall_s"])
    assert 0 < cpu["display_share_of_process"] < 1 and cpu["cores_allowed"] >= 1
    assert live["dropped_frames"] >= 0
    # The display is paced (the kiosk's [display] fps, 60 by default): the cap is reported with the rate.
    assert live["display_cap_fps"] == pytest.approx(60.0) and live["frames_not_drawn"] >= 0
    assert "at most 60 screens/s plus one at once for each new result" in _doc


def test_profile_names_the_functions_where_time_goes(outcome):
    result, _doc = outcome
    top = result["profile"]["top"]
    assert top and all(0 <= row["own_share"] <= 1 for row in top)
    names = " ".join(row["function"] for row in result["profile"]["top"])
    assert "(" in names


def test_markdown_section(outcome):
    _result, doc = outcome
    from edge.config import resolve_cpu_threads

    threads = resolve_cpu_threads("auto")
    assert "## Pipeline overhead (onnxruntime fp32, {} CPU inference thread{}), synth-test".format(
        threads, "" if threads == 1 else "s") in doc
    assert "| inference (runner.infer) |" in doc
    assert "| overlay (renderer.draw) |" in doc
    assert "### Live mode (camera emulated at 30 fps" in doc
    assert "| display thread's share of the process's CPU |" in doc
    assert "### Where the time goes (cProfile" in doc


def test_runs_as_a_script(tiny_bundle, tmp_path):
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, "benchmarks/pipeline.py", "--quick", "--live-frames", "0",
                           "--engine-cache", str(tmp_path / "engines"),
                           "--ort-spinning", "off", "--cpu-threads", "1",
                           "--bundle", tiny_bundle, "--out-json", str(out), "--no-doc"],
                          cwd=ROOT, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(out.read_text())
    assert data["live_mode"] is None and data["benchmark"] == "pipeline"
    # The kiosk's classifier opener is swapped for one with that engine cache: the quality gate stays.
    assert data["file_mode"]["stages"]["quality"]["n"] > 0
    assert (data["settings"]["ort_spinning"], data["settings"]["cpu_threads"]) == ("off", 1)
    assert data["runner"]["cpu_threads"] == 1


def test_py_spy_raw_output_is_summarised_per_thread():
    lines = [
        "thread (11): MainThread;<module> (x.py:1);draw (overlay.py:400);_text_block (overlay.py:170) 6",
        "thread (11): MainThread;<module> (x.py:1);read (camera.py:150);Condition.wait (t.py:3) 2",
        "thread (12): inference;_run (edge/kiosk/worker.py:210);Session.run (ort.py:200) 9",
        "thread (12): inference;_run (edge/kiosk/worker.py:210);Condition.wait (threading.py:320) 3",
        "thread (13): grab csi://0;_grab (camera.py:120);ReplayCapture.read (pipeline.py:90) 4",
        "garbage line",
    ]
    summary = pipeline.summarize_py_spy(lines, 100, pipeline.PySpy.IDLE)
    threads = {t["thread"]: t for t in summary["threads"]}
    assert sorted(threads) == ["MainThread", "grab", "inference"]
    assert threads["inference"]["samples"] == 12 and threads["inference"]["seconds"] == 0.12
    assert threads["inference"]["idle_share"] == 0.25
    top = threads["inference"]["top"][0]
    assert top == {"function": "Session.run", "samples": 9, "share_of_thread": 0.75}
    assert threads["MainThread"]["top"][0]["function"] == "_text_block"
    assert threads["grab"]["idle_share"] == 1.0


def test_py_spy_samples_the_live_run(tiny_bundle, tmp_path):
    import os
    import shutil

    beside_python = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not (shutil.which("py-spy") or os.path.isfile(beside_python)):
        pytest.skip("py-spy is not installed (pip install py-spy)")
    out = tmp_path / "p.json"
    code = pipeline.main(["--quick", "--live-frames", "30", "--py-spy", "--bundle", tiny_bundle,
                          "--out-json", str(out), "--doc", str(tmp_path / "b.md")])
    assert code == 0
    spy = json.loads(out.read_text())["live_mode"]["py_spy"]
    names = {t["thread"] for t in spy["threads"]}
    assert "display" in names
    assert "### Live mode, every thread (py-spy" in (tmp_path / "b.md").read_text()


def test_tensorrt_backend_runs_the_same_measurement(tiny_bundle, tmp_path, monkeypatch):
    """``--backend tensorrt`` end to end through the script, on STAND-INS for tensorrt and pycuda.

    No GPU or TensorRT exists on CI: the strict fakes of tests/edge/test_backend_tensorrt.py (one
    CUDA context per thread, a fake engine that really computes from the copied bytes) are put
    where ``import tensorrt`` / ``import pycuda.driver`` find them, and the engine comes from the
    real engine cache. The numbers mean nothing; the path, the table and the JSON are what is tested.
    On a Jetson the same command measures the real engine.
    """
    import types

    from edge.bundle import load_bundle
    from tests.edge.test_backend_tensorrt import EngineV3, FakeCuda, _cached_engine, _tensors, fake_tensorrt

    bundle = load_bundle(tiny_bundle)
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, _tensors(bundle), "10.3.0")
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    for name, module in (("tensorrt", trt), ("pycuda", pycuda), ("pycuda.driver", cuda)):
        monkeypatch.setitem(sys.modules, name, module)
    # The fake engine computes from the input but is not the model: the kiosk's golden-image check
    # at load (which would rightly refuse it) is the one thing switched off here.
    monkeypatch.setattr("edge.kiosk.modules.check_golden", lambda classifier, bundle: None)
    cache = str(tmp_path / "engines")
    _cached_engine(bundle, cache)
    out = tmp_path / "trt.json"
    code = pipeline.main(["--quick", "--backend", "tensorrt", "--precision", "fp16", "--engine-cache", cache,
                          "--bundle", tiny_bundle, "--out-json", str(out), "--doc", str(tmp_path / "b.md")])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["runner"]["describe"].startswith("tensorrt") and data["runner"]["precision"] == "fp16"
    assert data["file_mode"]["raw_all_cores"] is None  # the all-cores reference is for ONNX Runtime only
    assert data["file_mode"]["stages"]["inference"]["n"] > 0 and data["live_mode"]["results_fps"] > 0
    assert len(trt.engines) >= 2  # the raw runner's and the kiosk's (loaded in its inference thread)
    doc = (tmp_path / "b.md").read_text()
    assert "## Pipeline overhead (tensorrt fp16), synth-test" in doc and "| inference (runner.infer) |" in doc
