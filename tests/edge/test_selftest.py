"""`medkiosk selftest` end to end in a subprocess: real config, real bundle, a folder as the camera."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge.commands.selftest import display_check, library_checks
from edge.verify import FAIL, PASS, SKIP, WARN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _selftest(*args):
    return _medkiosk("selftest", *args)


def _medkiosk(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    process = subprocess.Popen([sys.executable, "-m", "edge"] + list(args), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def _config(tmp_path, models_dir, modules):
    path = str(tmp_path / "medkiosk.conf")
    with open(path, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = {}\nbackend = onnxruntime\nprecision = fp32\n"
                     "[quality]\nblur_threshold = 60\n".format(models_dir, modules))
    return path


def _statuses(document):
    return {c["name"]: c["status"] for s in document["sections"] for c in s["checks"]}


@pytest.mark.onnxruntime
def test_selftest_passes_on_a_good_install(tmp_path, tiny_bundle, synth_images):
    models = str(tmp_path / "models")
    shutil.copytree(tiny_bundle, os.path.join(models, "synth"))
    camera = os.path.dirname(next(iter(synth_images.values()))[0])
    config = _config(tmp_path, models, "synth-test")
    code, out, err = _selftest("--config", config, "--camera", camera, "--json")
    assert code == 0, out + err
    document = json.loads(out)
    statuses = _statuses(document)
    assert document["ok"] is True and document["failures"] == 0
    assert statuses["config"] == PASS
    assert statuses["synth-test: signature, manifest, sha256, ONNX contract"] == PASS
    assert statuses["synth-test: signature"] == PASS
    assert statuses["trusted keys"] == PASS
    assert statuses["synth-test: backend"] == PASS
    assert [n for n in statuses if n.startswith("synth-test: golden ")]
    assert statuses["module synth-test"] == PASS
    assert statuses["camera " + camera] == PASS
    assert statuses["display"] == SKIP  # no DISPLAY in this session


def test_selftest_fails_loudly(tmp_path, tiny_bundle):
    models = str(tmp_path / "models")
    shutil.copytree(tiny_bundle, os.path.join(models, "synth"))
    with open(os.path.join(models, "synth", "model.onnx"), "ab") as handle:
        handle.write(b"tampered")
    code, out, err = _selftest("--config", _config(tmp_path, models, "synth-test, chest"),
                               "--camera", str(tmp_path / "no-such-video.mp4"), "--no-display")
    assert code == 1
    assert "Traceback" not in err
    lines = out.splitlines()
    assert any(line.startswith("  [FAIL] synth: signature, manifest, sha256, ONNX contract") and
               "tampered" in line for line in lines), out
    assert any(line.startswith("  [FAIL] module chest: configured but no working bundle") for line in lines)
    assert any(line.startswith("  [FAIL] camera ") for line in lines)
    assert "  [SKIP] display: --no-display" in lines
    assert lines[-1] == "RESULT: FAIL (4 failed checks)"


def test_bad_config_is_a_failed_check(tmp_path, tiny_bundle):
    config = str(tmp_path / "bad.conf")
    with open(config, "w") as handle:
        handle.write("[kiosk]\nbackend = quantum\n")
    code, out, _err = _selftest("--config", config, "--models", tiny_bundle, "--no-camera", "--no-display")
    assert code == 1
    assert "[FAIL] config:" in out and "quantum" in out


@pytest.mark.onnxruntime
def test_library_checks():
    checks = {c.name: c for c in library_checks()}
    assert checks["numpy"].status == PASS and checks["cv2"].status == PASS
    assert checks["onnxruntime"].status == PASS and "CPUExecutionProvider" in checks["onnxruntime"].detail
    assert checks["tensorrt"].status in (PASS, SKIP)


def test_display_check_without_a_screen(monkeypatch):
    import cv2

    assert display_check(environ={}).status == SKIP
    if "GUI:                           NONE" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV has a GUI backend; opening a window without an X server may abort")
    # pip's headless OpenCV cannot open a window: a FAIL naming the fix, not a crash.
    monkeypatch.setenv("DISPLAY", ":99")
    check = display_check()
    assert check.status == FAIL
    assert "cannot open windows" in check.detail and "Fix" in check.detail


@pytest.mark.onnxruntime
def test_shipped_config_matches_the_shipped_bundles():
    """The config jetson_setup.sh installs passes with the bundles that ship; the absent skin module warns."""
    code, out, err = _selftest("--config", os.path.join(ROOT, "config", "medkiosk.conf"),
                               "--models", os.path.join(ROOT, "models"), "--backend", "onnxruntime",
                               "--precision", "fp32", "--no-camera", "--no-display")
    assert code == 0, out + err
    lines = out.splitlines()
    assert "  [PASS] module chest: installed and verified" in lines
    assert "  [PASS] module pediatric-pneumonia: installed and verified" in lines
    assert any(line.startswith("  [WARN] module skin: optional, not installed. Fix: ") and
               "docs/training-skin.md" in line for line in lines), out
    assert lines[-1] == "RESULT: PASS"


def _selftest_without_cryptography(*args):
    """The selftest in a Python where `import cryptography` fails (JetPack's system python3 before the
    venv exists): the import is blocked in that subprocess, nothing else is changed."""
    code = ("import sys; sys.modules['cryptography'] = None; from edge.cli import main; "
            "sys.exit(main(['selftest'] + sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("DISPLAY", None)
    process = subprocess.Popen([sys.executable, "-c", code] + list(args), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def test_without_cryptography_static_checks_files_and_the_unit_check_fails():
    config, models = os.path.join(ROOT, "config", "medkiosk.conf"), os.path.join(ROOT, "models")
    code, out, err = _selftest_without_cryptography("--static", "--config", config, "--models", models)
    assert code == 0, out + err
    assert "[WARN] trusted keys: cryptography is not installed" in out
    assert "[WARN] chest: signature: files match the signed list; the signature itself is not verified" in out
    assert out.splitlines()[-1] == "RESULT: PASS"
    code, out, err = _selftest_without_cryptography("--config", config, "--models", models, "--backend",
                                                    "onnxruntime", "--no-camera", "--no-display")
    assert code == 1 and "Traceback" not in err
    assert "[FAIL] trusted keys: cryptography is not installed" in out
    assert "[FAIL] chest: signature, manifest, sha256, ONNX contract: bundle " in out
    assert "signature.json: cannot be checked (cryptography is not installed" in out


def test_a_module_id_claimed_twice_fails(tmp_path, tiny_bundle):
    models = str(tmp_path / "models")
    for name in ("synth", "synth-copy"):
        shutil.copytree(tiny_bundle, os.path.join(models, name))
    code, out, err = _selftest("--static", "--config", _config(tmp_path, models, "synth-test"))
    assert code == 1, out + err
    lines = out.splitlines()
    assert any(line.startswith("  [FAIL] module id synth-test: claimed by 2 bundles: ")
               for line in lines), out
    assert ("  [FAIL] module synth-test: configured but no working bundle in {}. Fix: install its "
            "bundle".format(models)) in lines


def _capture_config(tmp_path, models, capture):
    path = str(tmp_path / "capture.conf")
    with open(path, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = synth-test\nstate_dir = {}\n[capture]\n{}\n".format(
            models, tmp_path / "state", capture))
    return path


def _capture_lines(out):
    return {c["name"]: (c["status"], c["detail"]) for s in json.loads(out)["sections"] for c in s["checks"]
            if c["name"].startswith("capture")}


def test_capture_mode_without_a_staff_id_and_loose_photo_modes_are_warned(tmp_path, tiny_bundle):
    """A real capture store with a real photo, its folder and file opened up as an older version (or a
    hand-made copy) might leave them: both reported (WARN: the unit still works), then tightened when
    the store is next opened (``medkiosk capture list`` here, key C on the kiosk), and the staff id set."""
    from edge.capture import CaptureStore

    models = str(tmp_path / "models")
    shutil.copytree(tiny_bundle, os.path.join(models, "synth"))
    assert _capture_lines(_selftest("--static", "--json", "--config",
                                    _capture_config(tmp_path, models, "enabled = no"))[1]) == {}
    store = CaptureStore(str(tmp_path / "state"), "skin").open()
    session = store.start_session(True, "tech-07")
    record = store.save(session, np.full((32, 48, 3), 120, np.uint8), "Acne")
    photo = os.path.join(session.folder, record["file"])
    root = os.path.join(str(tmp_path / "state"), "capture")
    os.chmod(session.folder, 0o750)
    os.chmod(photo, 0o644)
    config = _capture_config(tmp_path, models, "enabled = yes\nlabels = Acne, Scabies")
    code, out, err = _selftest("--static", "--json", "--config", config)
    assert code == 0, out + err  # warnings: the unit still works
    lines = _capture_lines(out)
    assert lines["capture mode"] == (WARN, "on, but [capture] captured_by is empty: key C refuses to "
                                           "start (it is recorded with every photo). Fix: set captured_by "
                                           "= a staff id (never a patient's name)")
    assert lines["capture photos"] == (WARN, (
        "2 path(s) under {} are open to other users (e.g. {} is 0750; folders must be 0700, files 0600). "
        "Fix: the kiosk tightens them when capture mode next opens (key C, or medkiosk capture list); or "
        "now: chmod -R go= {}").format(root, session.folder, root))
    code, out, err = _medkiosk("capture", "list", "--config", config)
    assert code == 0 and out.startswith("Acne "), out + err
    config = _capture_config(tmp_path, models, "enabled = yes\nlabels = Acne, Scabies\ncaptured_by = tech-07")
    lines = _capture_lines(_selftest("--static", "--json", "--config", config)[1])
    assert lines == {"capture mode": (PASS, "on, module skin, photos recorded as taken by tech-07"),
                     "capture photos": (PASS, "{}: private (folders 0700, files 0600)".format(root))}
    os.chmod(photo, 0o604)  # one bit for others is enough
    assert _capture_lines(_selftest("--static", "--json", "--config", config)[1])["capture photos"][0] == WARN
