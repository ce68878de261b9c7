"""``medkiosk run``: the kiosk (camera or USB images -> top-3 findings on the screen)."""

import os
import signal
import sys


def add_arguments(parser):
    parser.add_argument("--config", help="INI config (default /etc/medkiosk/medkiosk.conf when it exists)")
    parser.add_argument("--models", help="folder of model bundles (or one bundle folder); config models_dir")
    parser.add_argument("--module", help="module id to start with (added when the config does not list it)")
    parser.add_argument("--source", help="csi://0, v4l2:///dev/video0, file://clip.mp4, a video, an image "
                                         "folder such as /media/usb/, or one image")
    parser.add_argument("--output", help="display://0 (fullscreen), file://out.mp4, file://frames/, null://")
    parser.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"))
    parser.add_argument("--precision", choices=("fp16", "fp32", "int8"))
    parser.add_argument("--max-frames", type=int, help="stop after this many displayed frames")
    parser.add_argument("--keys", help="scripted key presses, one per frame: e.g. 'WAIT2,SPACE,S,M' "
                                       "(tests and demos)")
    parser.add_argument("--state-dir", help="where cases are saved (config state_dir)")
    parser.add_argument("--size", help="screen size WxH to compose (config [display] width/height)")
    parser.add_argument("--kiosk", dest="kiosk_mode", action="store_true", default=None,
                        help="kiosk mode: Q does not quit")
    parser.add_argument("--no-kiosk", dest="kiosk_mode", action="store_false", help="Q quits")
    parser.add_argument("--cpu-threads", help="threads for CPU inference: auto (all cores but one) or a "
                                              "number (config cpu_threads)")
    parser.add_argument("--no-locate", dest="locate", action="store_false", default=True,
                        help="no live outline of the film or screen (camera frames are still localised "
                             "when classified)")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per result (headless)")


def _size(text):
    from edge.errors import ConfigError

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError("--size {!r}: expected WIDTHxHEIGHT, e.g. 800x480".format(text)) from None
    return {"display.width": width, "display.height": height}


def usb_exporter_factory(state_dir, trigger_spec):
    """The E key's exporter, made on first use: the outbox in the state folder, the root helper's
    trigger from the config, referral sheets sized by the kiosk's own bundles."""

    def make(kiosk):
        from edge.usb_export import OUTBOX_DIR, UsbExporter, kiosk_referral, open_trigger

        specs = {slot.bundle.bundle_id: slot.bundle.description.input for slot in kiosk.slots
                 if slot.bundle is not None}
        return UsbExporter(os.path.join(state_dir, OUTBOX_DIR), open_trigger(trigger_spec),
                           referral=kiosk_referral(specs))

    return make


def build_kiosk(args, stdout=None):
    """Config + arguments -> (Kiosk, source, sink); nothing is opened yet."""
    from edge.capture import CaptureSettings
    from edge.caselog import CaseLog
    from edge.config import load_config, resolve_cpu_threads
    from edge.kiosk import Kiosk, default_classifier_opener, discover_modules
    from edge.kiosk.pairing import pairing_from_config
    from edge.locate import locate
    from edge.outputs import KeyScript, open_output
    from edge.sdnotify import Notifier
    from edge.signing import set_default_trust, trust_from_config
    from edge.sources import ImageFolderSource, open_source
    from edge.text import start as start_language

    overrides = {"models_dir": args.models, "source": args.source, "output": args.output,
                 "backend": args.backend, "precision": args.precision, "state_dir": args.state_dir,
                 "kiosk_mode": args.kiosk_mode, "cpu_threads": args.cpu_threads}
    if args.size:
        overrides.update(_size(args.size))
    config = load_config(args.config, overrides)
    start_language(config.kiosk["language"])  # the screen's catalogue and font, or a ConfigError
    set_default_trust(trust_from_config(config))  # its trusted keys and developer mode, for every load
    kiosk_cfg, camera = config.kiosk, config.camera
    keys = KeyScript(args.keys) if args.keys is not None else None
    source = open_source(kiosk_cfg["source"], width=camera["width"], height=camera["height"],
                         fps=camera["fps"], flip_method=camera["flip_method"],
                         open_timeout_s=camera["open_timeout_s"])
    sink = open_output(kiosk_cfg["output"], fps=source.fps or camera["fps"])
    slots, start = discover_modules(kiosk_cfg["models_dir"], kiosk_cfg["modules"], first=args.module)
    state_dir, min_free = kiosk_cfg["state_dir"], kiosk_cfg["min_free_mb"]
    import_dir = kiosk_cfg["import_dir"]
    headless = not sink.interactive
    kiosk = Kiosk(
        source, sink, slots, start=start,
        open_classifier=default_classifier_opener(kiosk_cfg["backend"], kiosk_cfg["precision"],
                                                  kiosk_cfg["engine_cache"], config.quality,
                                                  threads=resolve_cpu_threads(kiosk_cfg["cpu_threads"])),
        keys=keys, kiosk_mode=kiosk_cfg["kiosk_mode"], max_frames=args.max_frames,
        smoothing=config.live["smoothing"],
        caselog_factory=lambda: CaseLog(state_dir, min_free_mb=min_free),
        importer_factory=lambda: ImageFolderSource(import_dir),
        exporter_factory=usb_exporter_factory(state_dir, kiosk_cfg["usb_export"]),
        notifier=Notifier(), stdout=(stdout or sys.stdout) if headless and not args.quiet else None,
        max_consecutive_failures=kiosk_cfg["max_consecutive_failures"],
        inference_timeout_s=kiosk_cfg["inference_timeout_s"],
        size=(config.display["width"], config.display["height"]), display_fps=config.display["fps"],
        display_nice=config.display["nice"], cpu_split=kiosk_cfg["cpu_split"],
        locate=locate if args.locate else None,
        capture=CaptureSettings.from_config(config), pairing=pairing_from_config(config))
    return kiosk, source, sink


def run(args):
    os.umask(0o077)  # cases and logs are patient data: private to the kiosk user
    kiosk, source, sink = build_kiosk(args)
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: kiosk.stop())
    try:
        with source, sink:
            status = kiosk.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    unreadable = getattr(source, "unreadable", 0) + kiosk.desk.unreadable
    sys.stderr.write("medkiosk: {} frames shown, {} cases saved, {} frame errors, {} unreadable files "
                     "skipped\n".format(kiosk.frames, kiosk.cases_saved, kiosk.failures, unreadable))
    return status
