"""Shared fixtures. Python 3.6 compatible: the edge tests also run under the Jetson Nano's Python.

``tiny_bundle``: a real bundle built from synthetic images by a short training run and a real
ONNX export (see tests/make_test_bundle.py). The main run builds it into build/test-artifacts;
the Python 3.6 run (no torch there) reuses that folder through MEDKIOSK_TEST_ARTIFACTS.
"""

import glob
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
ARTIFACTS_ENV = "MEDKIOSK_TEST_ARTIFACTS"
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


TEST_KEYS = os.path.join(ROOT, "build", "test-keys")


def pytest_configure(config):
    """Every bundle a test exports is signed with a test key, which the tests (only) trust."""
    from edge.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, keygen

    key = os.path.join(TEST_KEYS, "test.key")
    if not os.path.isfile(key):
        os.makedirs(TEST_KEYS, exist_ok=True)
        keygen(key, key + ".pub")
    os.environ.setdefault(SIGNING_KEY_ENV, key)
    trusted = [TEST_KEYS]
    if os.environ.get(ARTIFACTS_ENV):
        trusted.append(os.path.join(os.environ[ARTIFACTS_ENV], "keys"))
    os.environ[TRUSTED_KEYS_ENV] = os.pathsep.join(trusted)


class Artifacts(object):
    """Paths of the shared test artefacts."""

    def __init__(self, root):
        self.root = root
        self.bundle = os.path.join(root, "bundle")
        self.data = os.path.join(root, "data")


@pytest.fixture(scope="session")
def test_artifacts():
    prebuilt = os.environ.get(ARTIFACTS_ENV)
    if prebuilt:
        artifacts = Artifacts(prebuilt)
        if not os.path.isdir(artifacts.bundle):
            pytest.fail("{}={} has no bundle/; run: python tests/make_test_bundle.py {}".format(
                ARTIFACTS_ENV, prebuilt, prebuilt))
        return artifacts
    pytest.importorskip("torch", reason="building the test bundle needs torch; set " + ARTIFACTS_ENV)
    from tests.make_test_bundle import build_test_bundle

    root = os.path.join(ROOT, "build", "test-artifacts")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    build_test_bundle(root)
    return Artifacts(root)


@pytest.fixture(scope="session")
def tiny_bundle(test_artifacts):
    """Path of a real, valid bundle (4 synthetic classes, 64x64 RGB, EfficientNet-Lite0)."""
    return test_artifacts.bundle


@pytest.fixture(scope="session")
def synth_images(test_artifacts):
    """{class name: [image paths]} of the synthetic data the tiny bundle was trained on."""
    classes = sorted(d for d in os.listdir(test_artifacts.data)
                     if os.path.isdir(os.path.join(test_artifacts.data, d)))
    return {c: sorted(glob.glob(os.path.join(test_artifacts.data, c, "*.png"))) for c in classes}


@pytest.fixture(scope="session")
def real_xray():
    """A real adult chest X-ray from ../shared/data (NIH ChestX-ray14)."""
    images = sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png")))
    if not images:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return images[0]


# Tests that run a model through ONNX Runtime (directly, through the CLI, the kiosk or selftest).
# `make test-jetpack46` runs the device tests as the Nano has them, without ONNX Runtime: these skip
# there, saying why. One entry per test (a prefix of its node id, so parametrised cases match);
# a test that gains an ONNX Runtime dependency is added here or calls pytest.importorskip itself.
NEEDS_ONNXRUNTIME = (
    "tests/edge/test_backend_tensorrt.py::test_stale_or_missing_engine_falls_back_with_the_reason",
    "tests/edge/test_backends.py::test_onnxruntime_runner_reports_the_provider_in_use",
    "tests/edge/test_backends.py::test_runner_matches_onnxruntime_directly",
    "tests/edge/test_backends.py::test_infer_rejects_bad_input",
    "tests/edge/test_backends.py::test_infer_before_load_is_an_error",
    "tests/edge/test_backends.py::test_fixed_batch_model_takes_one_image",
    "tests/edge/test_backends.py::test_gpu_requested_but_cpu_used_is_loud",
    "tests/edge/test_backends.py::test_fp16_requested_on_cpu_is_shown",
    "tests/edge/test_backends.py::test_resolve_providers",
    "tests/edge/test_backends.py::test_auto_falls_back_with_a_reason",
    "tests/edge/test_backends.py::test_broken_model_file_is_a_backend_error",
    "tests/edge/test_backends.py::test_onnxruntime_workers_do_not_busy_wait_unless_asked",
    "tests/edge/test_bundle.py::test_verify_passes_golden_images",
    "tests/edge/test_bundle.py::test_verify_fails_on_changed_expectations",
    "tests/edge/test_bundle.py::test_bundle_verify_cli",
    "tests/edge/test_classify.py::test_classify_real_model_matches_runner",
    "tests/edge/test_classify.py::test_classifier_reuses_its_buffer_and_checks_quality",
    "tests/edge/test_cli_classify.py::test_bad_files_get_one_line_each_and_the_rest_is_classified",
    "tests/edge/test_cli_classify.py::test_json_schema",
    "tests/edge/test_cli_classify.py::test_ascii_console_still_prints_the_disclaimer",
    "tests/edge/test_cli_run.py::test_headless_run_prints_results_and_saves_a_case",
    "tests/edge/test_cli_run.py::test_sigterm_is_a_clean_exit_with_sd_notify",
    "tests/edge/test_cli_run.py::test_a_cpu_fallback_is_said_loudly",
    "tests/edge/test_cli_run.py::test_cpu_threads_reach_the_onnxruntime_session",
    "tests/edge/test_cli_run.py::test_a_broken_file_is_counted_and_a_newline_in_a_name_cannot_forge_a_line",
    "tests/edge/test_cli_run.py::test_the_summary_counts_no_unreadable_files_of_a_clean_folder",
    "tests/edge/test_cli_run.py::test_developer_mode_in_the_config_is_journalled_once_at_start",
    "tests/edge/kiosk/test_kiosk_locate.py::",
    "tests/edge/kiosk/test_kiosk_notices.py::",
    "tests/edge/test_quality_calibration.py::test_real_xray_flagged_by_the_camera_default_passes_a_calibrated",
    "tests/edge/test_selftest.py::test_selftest_passes_on_a_good_install",
    "tests/edge/test_selftest.py::test_library_checks",
    # found by the JetPack 4.6 run after the merge: each runs a model (through the TensorRT stand-ins,
    # which evaluate with ONNX Runtime, or through the onnxruntime backend)
    "tests/edge/kiosk/test_kiosk_live.py::test_the_display_wakes_when_a_result_lands",
    "tests/edge/kiosk/test_kiosk_modules.py::test_the_golden_check_refuses_a_bundle_with_swapped_class_names",
    "tests/edge/kiosk/test_kiosk_modules.py::test_the_kiosk_does_not_run_a_module_whose_golden_check_fails",
    "tests/edge/kiosk/test_kiosk_pipeline.py::test_file_pipeline_numbers_queues_and_drops_jobs",
    "tests/edge/tensorrt_tests/test_engine_manage.py::test_int8_calibration_uses_the_runtime_preprocessing",
    "tests/edge/tensorrt_tests/test_engine_manage.py::test_other_trt_or_gpu_engines_are_stale_and_never_deserialised",
    "tests/edge/tensorrt_tests/test_engine_manage.py::test_rebuild_with_verify_fails_a_bundle_whose_golden_outputs_differ",
    "tests/edge/tensorrt_tests/test_engine_manage.py::test_verify_passes_and_catches_a_wrong_expectation",
    "tests/edge/tensorrt_tests/test_trt_compat.py::test_build_load_and_run_on_each_surface",
    "tests/edge/test_backends.py::test_dynamic_batch_model_takes_several",
    "tests/edge/test_backends.py::test_ood_output_is_returned",
    "tests/edge/test_bundle.py::test_bundle_verify_reports_a_duplicate_module_id",
    "tests/edge/test_classify.py::test_camera_frame_is_classified_on_its_normalised_crop",
    "tests/edge/test_classify.py::test_cli_classify_json_reports_the_localisation_of_a_camera_frame",
    "tests/edge/test_classify.py::test_digital_file_is_identity_with_identical_probabilities",
    "tests/edge/test_classify.py::test_letterboxed_xray_is_judged_on_the_xray_not_the_bars",
    "tests/edge/test_classify.py::test_skin_or_test_modules_are_not_localised",
    "tests/edge/test_cli_classify.py::test_pipe_device_and_forged_names_one_escaped_line_each",
    "tests/edge/test_cli_run.py::test_damaged_and_tampered_bundles_are_journalled_and_the_rest_runs",
    "tests/edge/test_dicom.py::test_same_picture_as_png_and_dicom_same_probabilities",
    "tests/edge/test_imageio.py::test_16bit_png_with_12bit_data_classifies_like_the_8bit_png",
    "tests/edge/test_imageio.py::test_bomb_and_big_images_peak_memory_in_classify",
    "tests/edge/test_selftest.py::test_shipped_config_matches_the_shipped_bundles",
    "tests/edge/test_signing.py::test_developer_mode_loads_unsigned_bundles_and_says_so",
    # the kiosk tests run the tiny bundle through the onnxruntime backend
    "tests/edge/kiosk/test_kiosk_live.py::test_a_",
    "tests/edge/kiosk/test_kiosk_locate.py::test_a_",
    "tests/edge/kiosk/test_kiosk_loop.py::test_a_",
    "tests/edge/kiosk/test_kiosk_loop.py::test_disk_full_is_shown_not_fatal",
    "tests/edge/kiosk/test_kiosk_loop.py::test_freeze_save_and_back_to_live",
    "tests/edge/kiosk/test_kiosk_loop.py::test_image_folder_with_scripted_keys",
    "tests/edge/kiosk/test_kiosk_loop.py::test_import_key_freezes_an_image_from_the_usb_folder",
    "tests/edge/kiosk/test_kiosk_loop.py::test_live_camera_disconnects_and_comes_back",
    "tests/edge/kiosk/test_kiosk_loop.py::test_modules_heatmap_and_quit",
    "tests/edge/kiosk/test_kiosk_loop.py::test_quality_gate_replaces_the_prediction",
    "tests/edge/kiosk/test_kiosk_loop.py::test_too_many_consecutive_failures_end_the_run",
    "tests/edge/kiosk/test_kiosk_loop.py::test_uncertain_banner_for_an_ambiguous_result",
    "tests/edge/kiosk/test_kiosk_loop.py::test_video_",
    "tests/edge/kiosk/test_kiosk_modules.py::test_a_",
    "tests/edge/kiosk/test_kiosk_notices.py::test_a_",
    "tests/edge/kiosk/test_kiosk_pipeline.py::test_a_",
    "tests/edge/kiosk/test_kiosk_pipeline.py::test_video_",
    "tests/edge/kiosk/test_kiosk_worker.py::test_worker_keeps_each_queued_frames_own_outcome",
    "tests/edge/kiosk/test_kiosk_referral.py::test_s_opens_the_entry_keys_type_and_enter_saves_with_the_reference",
    "tests/edge/kiosk/test_kiosk_referral.py::test_esc_cancels_and_nothing_is_saved",
    "tests/edge/kiosk/test_kiosk_referral.py::test_the_reference_stops_at_its_limit_and_s_saves",
    "tests/edge/kiosk/test_kiosk_referral.py::test_e_without_an_exporter_says_so",
    "tests/edge/kiosk/test_kiosk_referral.py::test_e_exports_the_new_cases_and_says_safe_to_remove",
    "tests/edge/kiosk/test_kiosk_referral.py::test_e_with_no_stick_is_one_line_on_screen_and_in_the_journal",
    "tests/edge/kiosk/test_kiosk_referral.py::test_e_with_a_bad_usb_export_setting_is_one_line",
)


def _has_onnxruntime():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _has_onnxruntime():
        return
    skip = pytest.mark.skip(reason="needs ONNX Runtime, absent here as on a JetPack 4.6 Nano")
    for item in items:
        node = os.path.relpath(str(item.fspath), ROOT).replace(os.sep, "/") + "::" + item.name
        if node.startswith(NEEDS_ONNXRUNTIME):
            item.add_marker(skip)
