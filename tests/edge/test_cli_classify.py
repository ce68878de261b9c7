"""`medkiosk classify` as a real subprocess: good images, bad files, folders, --json, a real X-ray."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DISCLAIMER = "Decision support only \u2014 not a diagnosis"


def _cli(*args, **env_extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    process = subprocess.Popen([sys.executable, "-m", "edge", "classify"] + list(args), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    return process.returncode, out.decode("utf-8"), err.decode("utf-8")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synth_images, real_xray):
    """A folder with good images, a non-image, a truncated PNG and a truncated JPEG (all real files)."""
    folder = str(tmp_path_factory.mktemp("inputs"))
    good = [shutil.copy(paths[0], os.path.join(folder, "{}.png".format(name)))
            for name, paths in sorted(synth_images.items())[:2]]
    shutil.copy(real_xray, os.path.join(folder, "xray.png"))
    with open(real_xray, "rb") as handle:
        png = handle.read()
    with open(os.path.join(folder, "truncated.png"), "wb") as handle:
        handle.write(png[:len(png) // 2])
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.imread(real_xray))
    assert ok
    with open(os.path.join(folder, "truncated.jpg"), "wb") as handle:
        handle.write(jpeg.tobytes()[:len(jpeg) - 200])
    with open(os.path.join(folder, "notes.jpg"), "w") as handle:
        handle.write("not an image\n")
    with open(os.path.join(folder, "readme.txt"), "w") as handle:
        handle.write("ignored: not an image extension\n")
    return {"folder": folder, "good": good, "xray": os.path.join(folder, "xray.png")}


@pytest.mark.onnxruntime
def test_bad_files_get_one_line_each_and_the_rest_is_classified(tiny_bundle, inputs, tmp_path):
    missing = str(tmp_path / "missing.png")
    code, out, err = _cli("--bundle", tiny_bundle, "--backend", "onnxruntime", inputs["folder"], missing)
    assert code == 1
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("medkiosk: error:")]
    assert len(error_lines) == 4, err
    for name in ("truncated.png", "truncated.jpg", "notes.jpg", "missing.png"):
        assert sum(name in line for line in error_lines) == 1, (name, err)
    assert "no such file" in err
    assert sum("truncated" in line for line in error_lines) == 2
    assert "4 of 7 images could not be classified" in err
    # the three good images (two synthetic, one real X-ray) are still classified
    for path in inputs["good"] + [inputs["xray"]]:
        assert path in out
    assert out.count(DISCLAIMER) == 3
    assert out.count("  1. ") == 3 and out.count("%") >= 9
    assert "readme.txt" not in out + err


@pytest.mark.onnxruntime
def test_json_schema(tiny_bundle, inputs):
    from edge.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    code, out, err = _cli("--bundle", tiny_bundle, "--json", "--backend", "onnxruntime",
                          "--precision", "fp32", inputs["xray"], os.path.join(inputs["folder"], "notes.jpg"))
    assert code == 1, err
    document = json.loads(out)
    assert document["bundle_id"] == bundle.bundle_id
    assert document["disclaimer"] == DISCLAIMER
    assert document["backend"] == "onnxruntime (CPUExecutionProvider, fp32)"
    assert document["errors"] == 1
    good, bad = document["images"]
    assert good["path"] == inputs["xray"]
    assert set(good["probabilities"]) == set(bundle.description.classes)
    assert abs(sum(good["probabilities"].values()) - 1.0) < 1e-3
    assert len(good["top3"]) == 3 and set(good["top3"][0]) == {"name", "probability", "word"}
    assert good["display"] in ("percent", "words") and good["suggested_module"] is None
    assert good["top3"][0]["probability"] == max(good["probabilities"].values())
    assert good["bundle_id"] == bundle.bundle_id and good["backend"] == document["backend"]
    assert isinstance(good["uncertain"], bool) and good["quality"]["ok"] in (True, False)
    assert bad["path"].endswith("notes.jpg") and "not a readable image" in bad["error"]


@pytest.mark.onnxruntime
def test_ascii_console_still_prints_the_disclaimer(tiny_bundle, inputs):
    """Python 3.6 on the Nano under LANG=C has an ASCII stdout: no UnicodeEncodeError mid-result."""
    code, out, err = _cli("--bundle", tiny_bundle, "--backend", "onnxruntime", inputs["good"][0],
                          PYTHONIOENCODING="ascii")
    assert code == 0, err
    assert "Decision support only - not a diagnosis" in out


def test_missing_bundle_is_one_line(tmp_path, inputs):
    code, out, err = _cli("--bundle", str(tmp_path / "nope"), inputs["xray"])
    assert code == 2
    assert err.strip().count("\n") == 0 and "does not exist or is not a folder" in err
    assert "Traceback" not in err


def test_unknown_backend_is_rejected(tiny_bundle, inputs):
    code, _out, err = _cli("--bundle", tiny_bundle, "--backend", "cuda", inputs["xray"])
    assert code == 2 and "invalid choice" in err


@pytest.mark.onnxruntime
def test_pipe_device_and_forged_names_one_escaped_line_each(tiny_bundle, inputs, tmp_path):
    """A FIFO (reading it used to hang: the subprocess timeout fails the test), a /dev/zero link (used
    to die with MemoryError), a name carrying a forged log line: one escaped error line each."""
    fifo = str(tmp_path / "scan.png")
    os.mkfifo(fifo)
    zero = str(tmp_path / "zero.jpg")
    os.symlink("/dev/zero", zero)
    forged = str(tmp_path / "x.png\nmedkiosk: 0 of 3 images could not be classified")
    with open(forged, "wb") as handle:
        handle.write(b"not an image")
    good = str(tmp_path / "good\r\x1b[31m.png")
    shutil.copy(inputs["xray"], good)
    code, out, err = _cli("--bundle", tiny_bundle, "--backend", "onnxruntime", fifo, zero, forged, good)
    assert code == 1 and "Traceback" not in err and "MemoryError" not in err
    lines = err.splitlines()
    assert "medkiosk: error: {}: is a named pipe (FIFO), not an image file".format(fifo) in lines
    assert "medkiosk: error: {}: is a character device, not an image file".format(zero) in lines
    assert [line for line in lines if line.startswith("medkiosk: error:") and "x.png" in line] == [
        "medkiosk: error: {}/x.png\\nmedkiosk: 0 of 3 images could not be classified: not a readable "
        "image (supported: .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, .pgm, .ppm, .dcm, .dicom)".format(
            tmp_path)]
    assert lines[-1] == "medkiosk: 3 of 4 images could not be classified"
    assert not any(line.startswith("medkiosk: 0 of") for line in lines)
    assert "{}/good\\r\\x1b[31m.png".format(tmp_path) in out.splitlines()
    assert "\r" not in out and "\x1b" not in out
