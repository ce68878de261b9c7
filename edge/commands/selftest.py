"""`medkiosk selftest`: the on-device checklist a technician runs after installing or repairing a kiosk.

Checks, in order: libraries, configuration and trusted keys, every model bundle (signature,
manifest, hash, ONNX contract, golden images through the chosen backend, what the backend really
uses), no module id claimed twice, that each configured module has a bundle (an optional one
missing is a warning), the camera delivers frames, the display opens. Prints one [PASS]/[FAIL]/
[WARN]/[SKIP] line each and exits 1 on any FAIL.
"""

import json
import os
import platform
import sys
import time

from edge.i18n import _, ngettext

CAMERA_FRAMES = 5


def add_arguments(parser):
    from edge.commands.classify import add_backend_arguments

    parser.add_argument("--config", default=None, metavar="PATH",
                        help="kiosk config (default /etc/medkiosk/medkiosk.conf when it exists)")
    parser.add_argument("--models", default=None, metavar="DIR",
                        help="models folder (one bundle per subfolder) or one bundle; default: the config's")
    add_backend_arguments(parser)
    parser.add_argument("--camera", default=None, metavar="URI",
                        help="camera to test (csi://0, v4l2:///dev/video0, a video or folder); default: the "
                             "config's source")
    parser.add_argument("--no-camera", action="store_true", help="skip the camera check")
    parser.add_argument("--no-display", action="store_true", help="skip the display check")
    parser.add_argument("--json", action="store_true", help="print the checklist as JSON")
    parser.add_argument("--static", action="store_true",
                        help="only what needs no libraries, camera or screen: config, trusted keys, each "
                             "bundle's signature, manifest and ONNX contract, the modules present (what "
                             "`jetson_setup.sh --dry-run` predicts with); golden images are not run")


def _version(module_name):
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    except Exception as exc:  # a broken native library raises OSError/RuntimeError on import
        return "broken ({})".format(exc)
    return str(getattr(module, "__version__", "installed"))


def library_checks():
    """Python and the libraries the kiosk needs (numpy, OpenCV) or may use (ONNX Runtime, TensorRT)."""
    from edge.lazy import OPENCV_HINT
    from edge.verify import FAIL, PASS, SKIP, WARN, Check

    checks = [Check("python", PASS, "{} ({})".format(platform.python_version(), sys.executable))]
    for name, hint in (("numpy", "apt install python3-numpy (JetPack) or pip install numpy"),
                       ("cv2", OPENCV_HINT)):
        version = _version(name)
        if version is None or version.startswith("broken"):
            checks.append(Check(name, FAIL, "{}. Fix: {}".format(version or "not installed", hint)))
        else:
            checks.append(Check(name, PASS, version))
    if _version("cv2") and not _version("cv2").startswith("broken"):
        import cv2

        from edge.sources.camera import opencv_has_gstreamer

        has = opencv_has_gstreamer(cv2.getBuildInformation())
        checks.append(Check("OpenCV GStreamer", PASS if has else WARN,
                            "yes" if has else "no: the CSI camera cannot be opened with this OpenCV "
                                              "(pip's opencv-python); install JetPack's nvidia-opencv"))
    ort = _version("onnxruntime")
    if ort and not ort.startswith("broken"):
        from edge.backends.onnxruntime import available_providers

        checks.append(Check("onnxruntime", PASS, "{} (providers: {})".format(
            ort, ", ".join(available_providers()))))
    else:
        checks.append(Check("onnxruntime", SKIP, ort or "not installed"))
    trt, pycuda = _version("tensorrt"), _version("pycuda")
    if trt and pycuda and not trt.startswith("broken") and not pycuda.startswith("broken"):
        checks.append(Check("tensorrt", PASS, "TensorRT {}, pycuda {}".format(trt, pycuda)))
    else:
        checks.append(Check("tensorrt", SKIP, "TensorRT {}, pycuda {}".format(trt or "not installed",
                                                                               pycuda or "not installed")))
    return checks


def load_settings(args):
    """(settings dict, [Check]) from the config file (if any) and the command line."""
    from edge.errors import ConfigError
    from edge.signing import default_trust, set_default_trust, trust_from_config
    from edge.verify import FAIL, PASS, Check

    settings = {"models_dir": "/opt/medkiosk/models", "modules": [], "optional_modules": [], "source": "csi://0",
                "backend": "auto", "precision": "fp16", "engine_cache": None, "trust": default_trust(),
                "display_size": None}
    checks = []
    try:
        from edge.config import load_config

        config = load_config(args.config)
        settings.update({key: config.kiosk[key] for key in settings if key in config.kiosk})
        settings["trust"] = trust_from_config(config)
        settings["display_size"] = (config.display["width"], config.display["height"])
        set_default_trust(settings["trust"])
        checks.append(Check("config", PASS, config.path or "no config file: built-in defaults"))
        checks.append(language_check(config.kiosk["language"], static=getattr(args, "static", False)))
        checks.extend(capture_checks(config))
    except ConfigError as exc:
        checks.append(Check("config", FAIL, str(exc)))
    settings["trust"].require_library = not getattr(args, "static", False)
    checks.append(trust_check(settings["trust"]))
    overrides = {"models_dir": args.models, "source": args.camera, "backend": args.backend,
                 "precision": args.precision, "engine_cache": args.engine_cache}
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return settings, checks


def language_check(language, static=False):
    """The worker's language: its catalogue made active and (unless static) a font that draws it."""
    from edge.errors import ConfigError
    from edge.i18n import LANGUAGE_NAMES, set_language
    from edge.text import engine_for, set_engine
    from edge.verify import FAIL, PASS, WARN, Check

    set_language(language)
    name = "{} ({})".format(language, LANGUAGE_NAMES.get(language, language))
    if static:
        return Check("language", PASS, "{}: catalogue installed (its font: the full selftest)".format(name))
    notes = []
    try:
        engine = engine_for(language, warn=notes.append)
    except ConfigError as exc:
        return Check("language", FAIL, str(exc))
    set_engine(engine, language)
    if notes:  # English without a font: drawn, ASCII only
        return Check("language", WARN, "{}: {}".format(name, notes[0].replace("medkiosk: ", "", 1)))
    return Check("language", PASS, "{}, font {}".format(name, engine.fonts[0]))


def capture_checks(config):
    """Capture mode: its staff id when it is on (WARN without one: key C refuses to start), and the
    photos stored under ``state_dir/capture`` private (WARN for anything looser than 0700/0600: the
    kiosk tightens them when capture mode or ``medkiosk capture`` next opens the store). No line at all
    when capture mode is off and has never stored anything."""
    from edge.capture import CAPTURE_DIR
    from edge.verify import PASS, WARN, Check

    capture = config.capture
    root = os.path.join(config.kiosk["state_dir"], CAPTURE_DIR)
    checks = []
    if capture["enabled"] and not capture["captured_by"]:
        checks.append(Check("capture mode", WARN, _(
            "on, but [capture] captured_by is empty: key C refuses to start (it is recorded with every "
            "photo). Fix: set captured_by = a staff id (never a patient's name)")))
    elif capture["enabled"]:
        checks.append(Check("capture mode", PASS, _("on, module {}, photos recorded as taken by {}").format(
            capture["module"], capture["captured_by"])))
    if os.path.isdir(root):
        checks.append(_capture_privacy_check(root))
    return checks


def _capture_privacy_check(root):
    from edge.capture import loose_paths
    from edge.verify import PASS, WARN, Check

    try:
        loose = loose_paths(root)
    except OSError as exc:
        return Check("capture photos", WARN, _("{} cannot be read ({}). Fix: run the selftest as the kiosk "
                                               "user (sudo -u medkiosk)").format(root, exc.strerror))
    if not loose:
        return Check("capture photos", PASS, _("{}: private (folders 0700, files 0600)").format(root))
    path, mode = loose[0]
    return Check("capture photos", WARN, _(
        "{} path(s) under {} are open to other users (e.g. {} is {:04o}; folders must be 0700, files "
        "0600). Fix: the kiosk tightens them when capture mode next opens (key C, or medkiosk capture "
        "list); or now: chmod -R go= {}").format(len(loose), root, path, mode, root))


def trust_check(trust):
    """The unit's trusted keys; WARN in developer mode, FAIL when no key is trusted."""
    from edge.signing import CRYPTOGRAPHY_HINT, DEVELOPER_BANNER, cryptography_version
    from edge.verify import FAIL, PASS, WARN, Check

    library = cryptography_version()
    if library is None:
        return Check("trusted keys", FAIL if trust.require_library else WARN,
                     "cryptography is {}: no bundle signature can be checked. Fix: {}".format(
                         library or "not installed", CRYPTOGRAPHY_HINT))
    keys = trust.keys
    if trust.developer_mode:
        return Check("trusted keys", WARN, "{}: {}. Fix: set developer_mode = no in [security] before the "
                     "unit sees patients".format(DEVELOPER_BANNER, trust.describe()))
    if not keys:
        return Check("trusted keys", FAIL, "no public key in {}: no bundle can load. Fix: re-run "
                     "jetson_setup.sh (it installs config/trusted_keys)".format(", ".join(trust.key_dirs)))
    if trust.problems:
        return Check("trusted keys", WARN, "{}; skipped: {}".format(trust.describe(),
                                                                    "; ".join(trust.problems)))
    return Check("trusted keys", PASS, "{} (cryptography {})".format(trust.describe(), library))


def module_presence_checks(settings, found):
    """Each configured module verified (else FAIL); each optional one present (else WARN with a real fix)."""
    from edge.verify import FAIL, PASS, WARN, Check

    checks = []
    for module_id in settings["modules"]:
        if module_id in found:
            checks.append(Check("module " + module_id, PASS, "installed and verified"))
        else:
            checks.append(Check("module " + module_id, FAIL, "configured but no working bundle in {}. Fix: "
                                "install its bundle".format(settings["models_dir"])))
    for module_id in settings["optional_modules"]:
        if module_id in found:
            checks.append(Check("module " + module_id, PASS, "optional, installed and verified"))
        else:
            checks.append(Check("module " + module_id, WARN, "optional, not installed. Fix: to offer it, "
                                "train and export a bundle (docs/training-skin.md), sign it, copy it into "
                                "{}; otherwise nothing to do".format(settings["models_dir"])))
    return checks


def static_bundle_checks(folder, trust):
    """(bundle or None, [Check]): every load check of one bundle, without running the model."""
    from edge.bundle import load_bundle
    from edge.errors import MedkioskError
    from edge.verify import FAIL, PASS, Check, signature_check

    name = "signature, manifest, sha256, ONNX contract"
    try:
        bundle = load_bundle(folder, trust=trust)
    except MedkioskError as exc:
        return None, [Check(name, FAIL, str(exc))]
    return bundle, [signature_check(bundle), Check(name, PASS, bundle.bundle_id)]


def model_checks(settings, static=False):
    """Every bundle under models_dir through the backend, and each configured module present."""
    from edge.verify import FAIL, Check, duplicate_module_checks, find_bundles, verify_bundle

    models_dir = settings["models_dir"]
    if os.path.isfile(os.path.join(models_dir, "manifest.json")):
        folders = [models_dir]
    else:
        folders = find_bundles(models_dir)
    if not folders:
        return [Check("models", FAIL, "no model bundles in {}. Fix: copy the bundles there (one folder each) "
                                      "or pass --models DIR".format(models_dir))]
    checks, found, bundles = [], set(), []
    for folder in folders:
        if static:
            bundle, bundle_checks = static_bundle_checks(folder, settings["trust"])
        else:
            bundle, bundle_checks = verify_bundle(folder, backend=settings["backend"],
                                                  precision=settings["precision"],
                                                  engine_cache=settings["engine_cache"],
                                                  trust=settings["trust"])
        bundles.append(bundle)
        label = bundle.module_id if bundle is not None else os.path.basename(folder.rstrip("/"))
        if bundle is not None and not any(c.failed for c in bundle_checks):
            found.add(bundle.module_id)
        for check in bundle_checks:
            check.name = "{}: {}".format(label, check.name)
        checks.extend(bundle_checks)
    duplicates = duplicate_module_checks(bundles)
    for check in duplicates:
        found.discard(check.name.split(" ", 2)[-1])
    return checks + duplicates + module_presence_checks(settings, found)


def camera_check(uri, frames=CAMERA_FRAMES, timeout_s=15.0):
    """Open the source and read ``frames`` frames."""
    from edge.errors import MedkioskError
    from edge.verify import FAIL, PASS, SKIP, Check

    try:
        from edge.sources import open_source
    except ImportError as exc:
        return Check("camera " + uri, SKIP, "edge.sources is not available ({})".format(exc))
    name = "camera " + uri
    start = time.monotonic()
    got, shape = 0, None
    try:
        with open_source(uri, reconnect=False) as source:
            while got < frames and time.monotonic() - start < timeout_s:
                ok, frame, _stamp = source.read()
                if ok and frame is not None:
                    got += 1
                    shape = frame.shape
                elif source.finished:
                    break
    except MedkioskError as exc:
        return Check(name, FAIL, str(exc))
    elapsed = time.monotonic() - start
    if got < frames:
        return Check(name, FAIL, "delivered {} of {} frames in {:.1f} s".format(got, frames, elapsed))
    return Check(name, PASS, "{} frames of {}x{} in {:.2f} s".format(got, shape[1], shape[0], elapsed))


def display_check(environ=None, size=None):
    """Open the kiosk window fullscreen once, draw a test card, and check that it fills the screen.

    ``size``: the config's [display] (width, height); a screen of another size is a WARN.
    """
    from edge.errors import MedkioskError
    from edge.verify import FAIL, SKIP, Check

    environ = os.environ if environ is None else environ
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return Check("display", SKIP, "no DISPLAY set (headless session); run it on the kiosk screen "
                                      "with DISPLAY=:0 to check the HDMI output")
    import numpy as np

    from edge.outputs import DisplaySink

    width, height = size or (320, 240)
    try:
        with DisplaySink("0", fullscreen=True, environ=environ) as sink:
            sink.write(np.full((height, width, 3), 128, dtype=np.uint8))
            sink.poll_key(200)
    except MedkioskError as exc:
        return Check("display", FAIL, str(exc))
    return window_check(sink, environ, size)


def window_check(sink, environ, size):
    """PASS when the window filled the screen; FAIL (with the fix) when it could not; WARN when the
    screen is not the config's [display] size."""
    from edge.i18n import _
    from edge.verify import FAIL, PASS, WARN, Check

    where = environ.get("DISPLAY") or "Wayland"
    if sink.window_problem:
        return Check("display", FAIL, "{}: {}".format(where, sink.window_problem))
    fit = sink.fit
    if size is not None and tuple(size) != fit.screen:
        return Check("display", WARN, _("{}: the window fills the {}x{} screen, but [display] is {}x{}: the "
                                        "screen is drawn at another size and scaled. Fix: set [display] "
                                        "width = {} and height = {}").format(
            where, fit.screen[0], fit.screen[1], size[0], size[1], *fit.screen))
    detail = _("{}: the kiosk window fills the {}x{} screen").format(where, fit.screen[0], fit.screen[1])
    if fit.fixes:
        detail += " " + _("(resized {} times to do so)").format(fit.fixes)
    return Check("display", PASS, detail)


def run(args):
    from edge.backends import validate_backend
    from edge.console import quiet_opencv
    from edge.verify import SKIP, Check

    settings, config_checks = load_settings(args)
    validate_backend(settings["backend"], settings["precision"])
    if args.static:
        sections = [(_("Configuration"), config_checks),
                    (_("Models ({}, static: golden images not run)").format(settings["models_dir"]),
                     model_checks(settings, static=True))]
        return report(args, sections, settings["trust"].developer_mode)
    quiet_opencv()
    sections = [(_("Libraries"), library_checks()), (_("Configuration"), config_checks),
                (_("Models ({}, backend {})").format(settings["models_dir"], settings["backend"]),
                 model_checks(settings))]
    if args.no_camera:
        camera = Check("camera", SKIP, "--no-camera")
    else:
        camera = camera_check(settings["source"])
    sections.append((_("Camera"), [camera]))
    sections.append((_("Display"), [Check("display", SKIP, "--no-display") if args.no_display
                                 else display_check(size=settings["display_size"])]))
    return report(args, sections, settings["trust"].developer_mode)


def report(args, sections, developer):
    """Print the checklist (or JSON); 1 when any check failed."""
    from edge.commands.bundle import print_checks
    from edge.console import echo
    from edge.signing import DEVELOPER_BANNER

    failures = sum(1 for _title, checks in sections for check in checks if check.failed)
    if args.json:
        sys.stdout.write(json.dumps({"ok": failures == 0, "failures": failures, "developer_mode": developer,
                                     "sections": [{"title": title, "checks": [c.to_dict() for c in checks]}
                                                  for title, checks in sections]}, indent=2) + "\n")
    else:
        echo("medkiosk selftest")
        for title, checks in sections:
            print_checks(title, checks)
        verdict = _("PASS") if not failures else ngettext("FAIL ({} failed check)", "FAIL ({} failed checks)",
                                                            failures).format(failures)
        echo(_("RESULT: {}").format(verdict) + (" - " + _(DEVELOPER_BANNER) if developer else ""))
    return 1 if failures else 0
