"""edge.config: INI defaults, file values, CLI overrides, and errors that name the key and the fix."""

import pytest

from edge.config import SCHEMA, load_config, resolve_cpu_threads
from edge.errors import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "medkiosk.conf"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_documented_file():
    config = load_config(use_default_path=False)
    kiosk = config.kiosk
    assert kiosk["models_dir"] == "/opt/medkiosk/models"
    assert kiosk["modules"] == ["chest", "pediatric-pneumonia"]  # the bundles that ship
    assert kiosk["optional_modules"] == ["skin"]  # absent: a selftest warning, not a failure
    assert config.security == {"trusted_keys": "/etc/medkiosk/trusted_keys", "developer_mode": False}
    assert kiosk["source"] == "csi://0" and kiosk["output"] == "display://0"
    assert kiosk["backend"] == "auto" and kiosk["precision"] == "fp16"
    assert kiosk["state_dir"] == "/var/lib/medkiosk" and kiosk["kiosk_mode"] is True
    assert config.quality == {"blur_threshold": 60.0, "dark_threshold": 40.0, "bright_threshold": 220.0}
    assert config.live["smoothing"] == pytest.approx(0.6)


def test_file_values_then_overrides(tmp_path):
    path = _write(tmp_path, "[kiosk]\nmodules = chest,\n  skin\nsource = v4l2:///dev/video1\nkiosk_mode = "
                            "no\n"
                            "[quality]\nblur_threshold = 25\n[live]\nsmoothing = 0\n")
    overrides = {"source": "file:///media/usb/", "backend": None, "quality.dark_threshold": "30"}
    config = load_config(path, overrides)
    assert config.path == path
    assert config.kiosk["modules"] == ["chest", "skin"]
    assert config.kiosk["optional_modules"] == []  # listed as required too: required wins
    assert config.kiosk["source"] == "file:///media/usb/"  # the flag wins over the file
    assert config.kiosk["backend"] == "auto"  # None means "flag not given"
    assert config.kiosk["kiosk_mode"] is False
    assert config.quality["blur_threshold"] == 25.0 and config.quality["dark_threshold"] == 30.0
    assert config.live["smoothing"] == 0.0
    assert config.get("quality.blur_threshold") == 25.0 and config.get("source") == "file:///media/usb/"


@pytest.mark.parametrize("text, words", [
    ("[kiosk]\nbackend = gpu\n", ["[kiosk] backend", "'gpu'", "Fix"]),
    ("[kiosk]\nsoruce = csi://0\n", ["unknown key 'soruce'", "[kiosk]", "source"]),
    ("[camera]\nfps = fast\n", ["[camera] fps", "not a whole number"]),
    ("[quality]\ndark_threshold = 300\n", ["[quality] dark_threshold", "outside 0..255"]),
    ("[kiosk]\nkiosk_mode = maybe\n", ["kiosk_mode", "yes or no"]),
    ("[kiosk]\nmodules = chest, chest\n", ["lists a module twice"]),
    ("[quality]\ndark_threshold = 200\nbright_threshold = "
     "100\n", ["dark_threshold", "below bright_threshold"]),
    ("[screen]\nwidth = 1\n", ["unknown section [screen]"]),
    ("kiosk_mode = yes\n", ["cannot be parsed"]),
    ("[kiosk]\nsource =\n", ["[kiosk] source", "must not be empty"]),
    ("[kiosk]\ncpu_threads = 0\n", ["[kiosk] cpu_threads", "outside 1..256"]),
    ("[kiosk]\ncpu_threads = all\n", ["[kiosk] cpu_threads", "not a whole number"]),
    ("[kiosk]\noptional_modules = skin, skin\n", ["[kiosk] optional_modules", "lists a module twice"]),
    ("[security]\ndeveloper_mode = sometimes\n", ["[security] developer_mode", "yes or no"]),
    ("[security]\ntrusted_keys =\n", ["[security] trusted_keys", "must not be empty"]),
])
def test_bad_values_name_the_key_and_the_fix(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    for word in words:
        assert word in message
    assert "Fix" in message


def test_missing_file_and_unknown_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.conf"))
    with pytest.raises(ConfigError, match="unknown setting 'kiosk.colour'"):
        load_config(use_default_path=False, overrides={"kiosk.colour": "red"})


def test_every_default_is_valid():
    config = load_config(use_default_path=False)
    assert set(config.values) == set(SCHEMA)


def test_cpu_threads_leave_one_core_to_the_loop(monkeypatch):
    assert load_config(use_default_path=False).kiosk["cpu_threads"] == "auto"
    assert load_config(use_default_path=False, overrides={"cpu_threads": "3"}).kiosk["cpu_threads"] == 3
    assert resolve_cpu_threads(3) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})  # a Jetson Nano: 4 cores
    assert resolve_cpu_threads("auto") == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0})
    assert resolve_cpu_threads("auto") == 1  # one core: inference still gets a thread


def test_security_section_gives_the_trust(tmp_path):
    from edge.signing import trust_from_config

    keys = tmp_path / "keys"
    keys.mkdir()
    text = "[security]\ntrusted_keys = {}\ndeveloper_mode = yes\n".format(keys)
    config = load_config(_write(tmp_path, text))
    trust = trust_from_config(config)
    assert trust.developer_mode is True and trust.key_dirs[0] == str(keys)
    assert trust_from_config(load_config(use_default_path=False)).developer_mode is False
