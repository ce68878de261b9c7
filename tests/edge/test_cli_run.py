"""``medkiosk run`` as a real subprocess: headless output, SIGTERM, sd_notify, clear errors."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    env.update(extra)
    return env


def _config(tmp_path, tiny_bundle, **values):
    settings = {"models_dir": tiny_bundle, "modules": "synth-test, skin", "backend": "onnxruntime",
                "precision": "fp32", "state_dir": str(tmp_path / "state"), "output": "null://"}
    settings.update(values)
    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\n" + "".join("{} = {}\n".format(k, v) for k, v in settings.items()) +
                    "[display]\nwidth = 800\nheight = 480\n")
    return str(path)


def _folder(tmp_path, synth_images):
    folder = tmp_path / "usb"
    folder.mkdir()
    for index, paths in enumerate(sorted(synth_images.values())[:2]):
        shutil.copy(paths[0], str(folder / "{}.png".format(index)))
    return str(folder) + "/"


def _medkiosk(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edge"] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, **kwargs)


@pytest.mark.onnxruntime
def test_headless_run_prints_results_and_saves_a_case(tmp_path, tiny_bundle, synth_images):
    config = _config(tmp_path, tiny_bundle)
    out = tmp_path / "frames"
    process = _medkiosk(["run", "--config", config, "--source", _folder(tmp_path, synth_images),
                         "--output", "file://{}/".format(out), "--max-frames", "5",
                         "--keys", "WAIT1,S,SPACE,F,M"],  # S opens the reference entry, SPACE saves
                        env=_env())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("[1] synth-test") and "%" in lines[0]
    assert any("case saved" in line for line in lines)
    assert "5 frames shown, 1 cases saved, 0 frame errors" in stderr
    frames = sorted(os.listdir(str(out)))
    assert len(frames) == 5 and cv2.imread(str(out / frames[0])).shape == (480, 800, 3)
    listing = _medkiosk(["cases", "--config", config, "list"], env=_env())
    listed, _err = listing.communicate(timeout=60)
    assert listing.returncode == 0 and "1 case(s)" in listed


@pytest.mark.onnxruntime
def test_sigterm_is_a_clean_exit_with_sd_notify(tmp_path, tiny_bundle, synth_images):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    process = _medkiosk(["run", "--config", _config(tmp_path, tiny_bundle), "--source",
                         _folder(tmp_path, synth_images), "--quiet"],
                        env=_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000"))
    messages = []
    try:
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        sock.settimeout(5)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            messages.append(sock.recv(4096).decode())
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=30)
        while True:
            messages.append(sock.recv(4096).decode())
            if messages[-1].startswith("STOPPING=1"):
                break
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        sock.close()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=showing synth-test" in ready
    assert messages.count("WATCHDOG=1") >= 3  # pinged at half of 0.2 s for a second
    assert any(m.startswith("STATUS=live synth-test on onnxruntime") for m in messages)
    assert messages[-1].startswith("STOPPING=1")


def test_errors_are_one_line_and_non_zero(tmp_path, tiny_bundle):
    bad = tmp_path / "bad.conf"
    bad.write_text("[kiosk]\nbackend = gpu\n")
    process = _medkiosk(["run", "--config", str(bad)], env=_env())
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "[kiosk] backend" in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    process = _medkiosk(["run", "--config", _config(tmp_path, tiny_bundle), "--source", "csi://0",
                         "--max-frames", "1"], env=_env())
    _stdout, stderr = process.communicate(timeout=60)
    if "no GStreamer support" in stderr:  # pip's OpenCV: refused clearly, not hung
        assert process.returncode == 2 and "JetPack's OpenCV" in stderr and "Traceback" not in stderr


@pytest.mark.onnxruntime
def test_a_cpu_fallback_is_said_loudly(tmp_path, tiny_bundle, synth_images):
    import importlib.util

    import numpy as np

    from edge.overlay import Layout

    if importlib.util.find_spec("tensorrt") is not None:
        import pytest

        pytest.skip("TensorRT is importable here: auto may not fall back")
    out = tmp_path / "frames"
    config = _config(tmp_path, tiny_bundle, backend="auto", precision="fp16")
    process = _medkiosk(["run", "--config", config, "--source", _folder(tmp_path, synth_images),
                         "--output", "file://{}/".format(out), "--max-frames", "2"], env=_env())
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "WARNING: Using onnxruntime: tensorrt unavailable" in stderr
    assert "WARNING: FP16 precision requested, running FP32" in stderr
    last = cv2.imread(str(out / sorted(os.listdir(str(out)))[-1]))
    alert = Layout((800, 480)).alert.crop(last).astype(int)
    red = (np.abs(alert - np.array([40, 40, 220])).sum(axis=2) < 40).sum()
    assert red > 1000  # the red "RUNNING ON CPU - GPU unavailable" band


@pytest.mark.onnxruntime
def test_cpu_threads_reach_the_onnxruntime_session(tmp_path, tiny_bundle, synth_images):
    """--cpu-threads (config cpu_threads) sets the inference threads of the kiosk's ONNX Runtime session."""
    import argparse

    from edge.commands import run as run_command

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    config = _config(tmp_path, tiny_bundle)
    for value, threads in (("1", 1), (None, None)):
        (tmp_path / str(value)).mkdir()
        argv = ["--config", config, "--source", _folder(tmp_path / str(value), synth_images)]
        if value:
            argv += ["--cpu-threads", value]
        kiosk, _source, _sink = run_command.build_kiosk(parser.parse_args(argv))
        classifier = kiosk.open_classifier(kiosk.slot)
        try:
            options = classifier.runner.session.get_session_options()
            if threads is None:  # auto: all cores but one
                from edge.config import resolve_cpu_threads

                threads = resolve_cpu_threads("auto")
            assert classifier.runner.threads == threads
            assert options.intra_op_num_threads == threads
        finally:
            classifier.__exit__(None, None, None)


@pytest.mark.onnxruntime
def test_damaged_and_tampered_bundles_are_journalled_and_the_rest_runs(tmp_path, tiny_bundle, synth_images):
    """A bundle whose manifest is nested too deep for the parser (a RecursionError crashed the whole
    kiosk: a restart loop under systemd) and one with swapped class names (its golden images give
    other results) are each disabled with one journal line; the good module keeps running."""
    import json

    from tests.make_test_bundle import resign

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle, str(models / "synth"))
    nested = models / "nested"
    nested.mkdir()
    (nested / "manifest.json").write_text("[" * 200000 + "]" * 200000)
    swapped = models / "swapped"
    shutil.copytree(tiny_bundle, str(swapped))
    manifest = json.loads((swapped / "manifest.json").read_text())
    manifest["module"]["id"] = "swapped"
    for key in ("classes", "display_names"):
        names = manifest["model"][key]
        names[0], names[1] = names[1], names[0]
    (swapped / "manifest.json").write_text(json.dumps(manifest))
    resign(str(swapped))  # signed again, as a maintainer would: only the golden check can catch it
    config = _config(tmp_path, str(models), modules="synth-test, nested, swapped")
    process = _medkiosk(["run", "--config", config, "--source", _folder(tmp_path, synth_images),
                         "--max-frames", "8", "--keys", "WAIT1,M,M,WAIT2,M"], env=_env())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    damaged = [line for line in lines
               if line.startswith("medkiosk: module nested disabled: Model bundle damaged")]
    assert len(damaged) == 1 and "Fix:" in damaged[0]
    golden = [line for line in lines if "golden images" in line]
    assert len(golden) == 1 and golden[0].startswith("medkiosk: Module cannot run here: swapped: ")
    results = [line for line in stdout.splitlines() if line.startswith("[")]
    assert results and all(" synth-test " in line for line in results)  # never a result of the tampered one


@pytest.mark.onnxruntime
def test_a_broken_file_is_counted_and_a_newline_in_a_name_cannot_forge_a_line(tmp_path, tiny_bundle,
                                                                             synth_images):
    """A USB folder with a file that is not an image and one whose name holds a newline: the summary
    counts the broken file, and the named file's result is one stdout line with the name escaped."""
    folder = tmp_path / "usb"
    folder.mkdir()
    images = sorted(synth_images.values())
    shutil.copy(images[0][0], str(folder / "0.png"))
    shutil.copy(images[1][0], str(folder / "1\nmedkiosk: forged.png"))
    (folder / "2-broken.png").write_bytes(b"not a png at all")
    process = _medkiosk(["run", "--config", _config(tmp_path, tiny_bundle), "--source", str(folder) + "/",
                         "--max-frames", "8", "--keys", "WAIT1,F,WAIT1,F,WAIT1,F"], env=_env())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "8 frames shown, 0 cases saved, 0 frame errors, 1 unreadable files skipped" in stderr
    lines = stdout.splitlines()
    assert lines and all(line.startswith("[") for line in lines), lines  # no forged line
    named = [line for line in lines if "1\\nmedkiosk: forged.png:" in line]
    assert named and " synth-test " in named[0]
    assert not any(line.startswith("medkiosk: forged") for line in stderr.splitlines())


def test_the_summary_counts_no_unreadable_files_of_a_clean_folder(tmp_path, tiny_bundle, synth_images):
    process = _medkiosk(["run", "--config", _config(tmp_path, tiny_bundle), "--source",
                         _folder(tmp_path, synth_images), "--max-frames", "2", "--quiet"], env=_env())
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "2 frames shown, 0 cases saved, 0 frame errors, 0 unreadable files skipped" in stderr


def test_developer_mode_in_the_config_is_journalled_once_at_start(tmp_path, tiny_bundle, synth_images):
    config = _config(tmp_path, tiny_bundle)
    with open(config, "a") as handle:
        handle.write("[security]\ndeveloper_mode = yes\n")
    process = _medkiosk(["run", "--config", config, "--source", _folder(tmp_path, synth_images),
                         "--max-frames", "2", "--quiet"], env=_env())
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    from edge.signing import DEVELOPER_BANNER

    assert "medkiosk: " + DEVELOPER_BANNER in stderr.splitlines(), stderr
    assert stderr.count(DEVELOPER_BANNER) == 1, stderr


def test_run_locates_live_frames_by_default_and_not_with_no_locate(tmp_path, tiny_bundle, synth_images):
    import argparse

    from edge.commands import run as run_command
    from edge.kiosk import locate_whole_frame
    from edge.locate import locate

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    argv = ["--config", _config(tmp_path, tiny_bundle), "--source", _folder(tmp_path, synth_images)]
    for extra, expected in (([], locate), (["--no-locate"], locate_whole_frame)):
        kiosk, _source, _sink = run_command.build_kiosk(parser.parse_args(argv + extra))
        assert kiosk.locate is expected


def test_the_display_pace_comes_from_the_config(tmp_path, tiny_bundle, synth_images):
    """[display] fps (default 60, the panel's refresh) paces the live screens; out of range is refused."""
    import argparse

    from edge.commands import run as run_command
    from edge.errors import ConfigError

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    config = _config(tmp_path, tiny_bundle)
    argv = ["--config", config, "--source", _folder(tmp_path, synth_images)]
    kiosk, _source, _sink = run_command.build_kiosk(parser.parse_args(argv))
    assert kiosk.pacer.interval == pytest.approx(1.0 / 60)
    with open(config, "a") as handle:
        handle.write("fps = 25\n")
    kiosk, _source, _sink = run_command.build_kiosk(parser.parse_args(argv))
    assert kiosk.pacer.interval == pytest.approx(1.0 / 25)
    with open(config) as handle:
        text = handle.read()
    with open(config, "w") as handle:
        handle.write(text.replace("fps = 25\n", "fps = 0\n"))
    with pytest.raises(ConfigError, match="fps"):
        run_command.build_kiosk(parser.parse_args(argv))
