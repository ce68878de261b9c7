"""The kiosk's INI configuration (``/etc/medkiosk/medkiosk.conf``): defaults, parsing, validation.

Python 3.6 has no tomllib, so the device config is INI (configparser). Every value is checked
here; a bad value raises ConfigError naming the section, the key and the fix. Command-line flags
override the file through ``overrides`` ({"key": value} for [kiosk] keys or {"section.key": value}).
"""

import configparser
import os

from edge.capture import DEFAULT_LABELS, parse_captured_by, parse_labels
from edge.errors import ConfigError
from edge.quality import QualityThresholds
from edge.tensorrt.cache import DEFAULT_ENGINE_CACHE

DEFAULT_PATH = "/etc/medkiosk/medkiosk.conf"
BACKENDS = ("auto", "tensorrt", "onnxruntime")
PRECISIONS = ("fp16", "fp32", "int8")
TRUE_WORDS = ("1", "yes", "true", "on")
FALSE_WORDS = ("0", "no", "false", "off")


def _name(key):
    return key.split()[-1]


def _text(value, key):
    value = str(value).strip()
    if not value:
        raise ConfigError("config {}: must not be empty. Fix: give it a value or delete the line to use "
                          "the default".format(key))
    return value


def _choice(choices):
    def parse(value, key):
        value = str(value).strip().lower()
        if value not in choices:
            raise ConfigError("config {}: {!r} is not one of {}. Fix: set {} = {}".format(
                key, value, ", ".join(choices), _name(key), choices[0]))
        return value
    return parse


def _usb_export(value, key):
    """``socket:PATH`` (the unit's root helper socket) or ``command:PATH`` (the helper run directly)."""
    value = _text(value, key)
    scheme, _sep, rest = value.partition(":")
    if scheme not in ("socket", "command") or not rest.startswith("/"):
        raise ConfigError("config {}: {!r} is not understood. Fix: set {} = "
                          "socket:/run/medkiosk-usb-export.sock".format(key, value, _name(key)))
    return value


def _bool(value, key):
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError("config {}: {!r} is not yes/no. Fix: set {} = yes or no".format(
        key, value, _name(key)))


def _number(low, high, integer=False):
    def parse(value, key):
        try:
            number = int(str(value).strip()) if integer else float(str(value).strip())
        except ValueError:
            raise ConfigError("config {}: {!r} is not {}. Fix: set a number in {}..{}".format(
                key, value, "a whole number" if integer else "a number", low, high)) from None
        if not low <= number <= high:
            raise ConfigError("config {}: {} is outside {}..{}. Fix: set a number in that range".format(
                key, number, low, high))
        return number
    return parse


def _optional_text(value, key):
    return str(value or "").strip()


def _cpu_threads(value, key):
    """'auto' or a whole number of threads (1..256)."""
    if str(value).strip().lower() == "auto":
        return "auto"
    return _number(1, 256, integer=True)(value, key)


def resolve_cpu_threads(value):
    """CPU inference threads: ``auto`` leaves one core for the camera and display loop (at least 1).

    Measured (docs/benchmarks.md): on 2 cores, inference on one thread and the loop on the other
    shows more frames per second than inference on both, because drawing then waits for a core.
    """
    if value != "auto":
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (systemd CPUAffinity)
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _language(value, key):
    """A language with an installed catalogue (edge/locale), e.g. en, hi, bn."""
    from edge.i18n import LANGUAGE_NAMES, installed_languages

    value = str(value).strip().lower()
    installed = installed_languages()
    if value not in installed:
        raise ConfigError("config {}: language {!r} is not installed. Fix: set {} = one of {}".format(
            key, value, _name(key), ", ".join("{} ({})".format(code, LANGUAGE_NAMES.get(code, code))
                                               for code in installed)))
    return value


def _modules(value, key):
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        items = [part.strip() for part in str(value).replace("\n", ",").split(",")]
    items = [item for item in items if item]
    if len(set(items)) != len(items):
        raise ConfigError("config {}: lists a module twice ({}). Fix: list each module id once".format(
            key, ", ".join(items)))
    return items


# The quality gate's defaults have one home, QualityThresholds; the config writes them as text.
QUALITY_DEFAULTS = {key: "{:g}".format(value) for key, value in QualityThresholds().to_dict().items()}

# section -> key -> (default as written in the file, parser)
SCHEMA = {
    "kiosk": {
        "models_dir": ("/opt/medkiosk/models", _text),
        "modules": ("chest, pediatric-pneumonia", _modules),
        # offered when installed; absent is a selftest warning, never a failure
        "optional_modules": ("skin", _modules),
        "source": ("csi://0", _text),
        "output": ("display://0", _text),
        "backend": ("auto", _choice(BACKENDS)),
        "precision": ("fp16", _choice(PRECISIONS)),
        "state_dir": ("/var/lib/medkiosk", _text),
        "engine_cache": (DEFAULT_ENGINE_CACHE, _text),
        "kiosk_mode": ("yes", _bool),
        "import_dir": ("/media/usb", _text),
        # E key: how the kiosk asks the root helper to copy new cases to the stick (edge.usb_export)
        "usb_export": ("socket:/run/medkiosk-usb-export.sock", _usb_export),
        "min_free_mb": ("200", _number(0, 10 ** 6, integer=True)),
        "max_consecutive_failures": ("30", _number(1, 10 ** 6, integer=True)),
        "inference_timeout_s": ("30", _number(1, 3600)),
        "cpu_threads": ("auto", _cpu_threads),
        # a CPU runner's inference thread on all cores but the first, the camera/display loop on that one
        "cpu_split": ("yes", _bool),
        # the worker's language on the screen, the web page and selftest (edge/locale)
        "language": ("en", _language),
    },
    "camera": {
        "width": ("1280", _number(64, 8192, integer=True)),
        "height": ("720", _number(48, 8192, integer=True)),
        "fps": ("30", _number(1, 240, integer=True)),
        "flip_method": ("0", _number(0, 7, integer=True)),
        "open_timeout_s": ("10", _number(1, 120)),
    },
    "display": {
        "width": ("1280", _number(320, 7680, integer=True)),
        "height": ("720", _number(240, 4320, integer=True)),
        # live: the most screens a second the kiosk draws (the panel's refresh rate); results at once
        "fps": ("60", _number(1, 240)),
        # the display thread's CPU priority below the inference thread's (nice levels; 0: the same)
        "nice": ("5", _number(0, 19, integer=True)),
    },
    "quality": {
        "blur_threshold": (QUALITY_DEFAULTS["blur_threshold"], _number(0, 100000)),
        "dark_threshold": (QUALITY_DEFAULTS["dark_threshold"], _number(0, 255)),
        "bright_threshold": (QUALITY_DEFAULTS["bright_threshold"], _number(0, 255)),
    },
    "live": {
        "smoothing": ("0.6", _number(0.0, 0.99)),
    },
    "security": {
        "trusted_keys": ("/etc/medkiosk/trusted_keys", _text),
        "developer_mode": ("no", _bool),
    },
    # Capture mode (key C, edge/kiosk/capture_mode.py): labelled photos for training, with consent.
    "capture": {
        "enabled": ("no", _bool),
        "module": ("skin", _text),
        "labels": (DEFAULT_LABELS, parse_labels),
        "labels_file": ("", _optional_text),
        "captured_by": ("", parse_captured_by),
        "export_dir": ("/media/usb", _text),
    },
    # `medkiosk serve` (edge/serve): off by default; bind/allow are checked further in edge.serve.settings.
    "serve": {
        "enabled": ("no", _bool),
        "bind": ("127.0.0.1", _text),
        "port": ("8443", _number(1, 65535, integer=True)),
        "allow": ("127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16", _text),
        "tls": ("yes", _bool),
        "tls_dir": ("/var/lib/medkiosk/serve/tls", _text),
        "max_upload_mb": ("20", _number(1, 200, integer=True)),
        "max_pixels": ("40000000", _number(10000, 400000000, integer=True)),
        "rate_per_minute": ("30", _number(1, 100000, integer=True)),
        "pair_minutes": ("5", _number(1, 60, integer=True)),
        # key P on the kiosk screen shows a pairing code: off, since anyone with a USB keyboard at the
        # unit could pair a device (docs/technician.md); `medkiosk serve pair` works either way
        "pairing_key": ("off", _bool),
        "token_days": ("90", _number(1, 3650, integer=True)),
        "http_threads": ("4", _number(1, 64, integer=True)),
        "cpu_threads": ("1", _number(1, 256, integer=True)),
    },
}


class Config(object):
    """Validated configuration: ``config.kiosk["source"]``, ``config.quality`` (dict), ``config.path``."""

    def __init__(self, values, path=None):
        self.values = values
        self.path = path

    def section(self, name):
        return dict(self.values[name])

    def __getattr__(self, name):
        values = self.__dict__.get("values") or {}
        if name in values:
            return dict(values[name])
        raise AttributeError(name)

    def get(self, dotted):
        section, _dot, key = dotted.rpartition(".")
        return self.values[section or "kiosk"][key]

    def __repr__(self):
        return "Config(path={!r})".format(self.path)


def _locate(key):
    """'key' or 'section.key' -> (section, key); raises ConfigError for unknown keys."""
    if "." in key:
        section, name = key.split(".", 1)
    else:
        section, name = "kiosk", key
    if section not in SCHEMA or name not in SCHEMA[section]:
        raise ConfigError("unknown setting {!r}. Fix: use one of {}".format(
            key, ", ".join("{}.{}".format(s, k) for s in sorted(SCHEMA) for k in sorted(SCHEMA[s]))))
    return section, name


def load_config(path=None, overrides=None, use_default_path=True):
    """Defaults, then the INI file (``path``, else DEFAULT_PATH when it exists), then ``overrides``.

    ``overrides`` values that are None are ignored, so argparse results can be passed as they are.
    """
    raw = {section: {key: spec[0] for key, spec in keys.items()} for section, keys in SCHEMA.items()}
    if path is None and use_default_path and os.path.isfile(DEFAULT_PATH):
        path = DEFAULT_PATH
    if path is not None:
        path = str(path)
        if not os.path.isfile(path):
            raise ConfigError("config file {}: does not exist. Fix: pass an existing file with --config, "
                              "or omit --config to use the defaults".format(path))
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path) as handle:
                parser.read_file(handle)
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError("config file {}: cannot be parsed ({}). Fix: write it as INI "
                              "([kiosk] then key = value "
                              "lines)".format(path, str(exc).splitlines()[0])) from exc
        except OSError as exc:
            raise ConfigError("config file {}: cannot be read ({}). Fix: check its permissions".format(
                path, exc.strerror)) from exc
        for section in parser.sections():
            if section not in SCHEMA:
                raise ConfigError("config file {}: unknown section [{}]. Fix: use {}".format(
                    path, section, ", ".join("[{}]".format(s) for s in sorted(SCHEMA))))
            for key, value in parser.items(section):
                if key not in SCHEMA[section]:
                    raise ConfigError("config file {}: unknown key {!r} in [{}] (typo?). Fix: use one of "
                                      "{}".format(
                        path, key, section, ", ".join(sorted(SCHEMA[section]))))
                raw[section][key] = value
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, name = _locate(key)
        raw[section][name] = value
    values = {}
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, (_default, parse) in keys.items():
            values[section][key] = parse(raw[section][key], "[{}] {}".format(section, key))
    quality = values["quality"]
    if not quality["dark_threshold"] < quality["bright_threshold"]:
        raise ConfigError("config [quality]: dark_threshold {} must be below bright_threshold {}. Fix: "
                          "e.g. dark_threshold = 40, bright_threshold = 220".format(
                              quality["dark_threshold"], quality["bright_threshold"]))
    # A module listed in both is required: an older unit's config lists skin in modules.
    kiosk = values["kiosk"]
    kiosk["optional_modules"] = [m for m in kiosk["optional_modules"] if m not in kiosk["modules"]]
    return Config(values, path)
