"""`medkiosk serve [run|pair|tls|devices|revoke ID]`: the optional LAN service and its pairing.

run (default) serves the JSON API and the page ([serve] enabled = yes in the config); pair prints a
short pairing code for the kiosk screen and the TLS fingerprint; tls makes the unit's key (set-up);
devices lists paired devices; revoke ID removes one.
"""

import datetime


def add_arguments(parser):
    parser.add_argument("action", nargs="?", default="run", choices=sorted(ACTIONS),
                        help="run (default): serve; pair: show a pairing code; tls: make the TLS key; "
                             "devices: list paired devices; revoke: remove one")
    parser.add_argument("device", nargs="?", default=None, metavar="ID", help="device id for revoke")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="config file (default /etc/medkiosk/medkiosk.conf when it exists)")
    parser.add_argument("--bind", default=None, metavar="ADDRESS",
                        help="address instead of [serve] bind (a container passes its own address)")
    parser.add_argument("--port", type=int, default=None,
                        help="port instead of [serve] port (0: any free port, for tests)")
    parser.add_argument("--force", action="store_true", help="tls: make a new key even if one exists")


def _settings(args):
    from edge.config import load_config
    from edge.i18n import set_language
    from edge.serve.settings import ServeSettings

    config = load_config(args.config, {"serve.bind": args.bind})
    set_language(config.kiosk["language"])  # the page and the API's wording in the worker's language
    settings = ServeSettings(config)
    if args.port is not None:
        settings.port = args.port
    return settings


def _store(settings):
    from edge.serve.auth import DeviceStore

    return DeviceStore(settings.state_dir, settings.pair_seconds, settings.token_seconds)


def _when(epoch):
    return datetime.datetime.utcfromtimestamp(epoch).strftime("%Y-%m-%d %H:%M UTC")


def _run(args, settings):
    import logging

    from edge.sdnotify import Notifier
    from edge.serve.server import STOP_TIMED_OUT, hard_exit, serve

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    code = serve(settings, notifier=Notifier())
    if code == STOP_TIMED_OUT:
        hard_exit(code)  # worker threads still running: a normal exit would wait for them
    return code


def _pair(args, settings):
    import os

    from edge.console import echo
    from edge.serve.tls import fingerprint, paths

    code, expires = _store(settings).new_code()
    line = "pairing code {} (valid until {}, one device) - open {} on the phone or laptop".format(
        code, _when(expires), settings.url)
    cert = paths(settings.tls_dir)[1]
    if settings.tls and os.path.isfile(cert):
        line += "; certificate SHA-256 " + fingerprint(cert)
    echo(line)
    return 0


def _tls(args, settings):
    from edge.console import echo
    from edge.serve.tls import fingerprint, make_certificate

    _key, cert = make_certificate(settings.tls_dir, str(settings.bind), force=args.force)
    echo("TLS certificate {} for {}: SHA-256 {}".format(cert, settings.bind, fingerprint(cert)))
    return 0


def _devices(args, settings):
    from edge.console import echo

    devices = _store(settings).devices()
    for device in devices:
        echo("{}  {}  paired {}  expires {}".format(device["id"], device["device"], _when(device["created"]),
                                                    _when(device["expires"])))
    if not devices:
        echo("no paired devices")
    return 0


def _revoke(args, settings):
    from edge.console import echo
    from edge.errors import ConfigError

    if not args.device:
        raise ConfigError("revoke needs a device id. Fix: medkiosk serve revoke ID (ids from `medkiosk serve "
                          "devices`)")
    removed = _store(settings).revoke(args.device)
    echo("{} device(s) removed".format(removed))
    return 0 if removed else 1


ACTIONS = {"run": _run, "pair": _pair, "tls": _tls, "devices": _devices, "revoke": _revoke}


def run(args):
    return ACTIONS[args.action](args, _settings(args))
