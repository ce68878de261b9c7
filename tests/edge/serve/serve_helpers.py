"""A real `medkiosk serve` in a subprocess on loopback, and a small HTTPS client for the tests.

Everything is real: the shipped chest bundles, ONNX Runtime, the case log on disk, TLS with a key
made by openssl, HTTP over 127.0.0.1. Python 3.6 compatible.
"""

import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODELS = os.path.join(ROOT, "models")
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
PEDIATRIC = os.path.join(SHARED_DATA, "chest-pediatric", "train")
NIH = os.path.join(SHARED_DATA, "chest-nih")
READY = re.compile(r"on (https?)://([0-9.]+):(\d+)/")


def env():
    environ = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    environ.pop("NOTIFY_SOCKET", None)
    return environ


def write_config(folder, **serve):
    """A config in ``folder`` using the shipped bundles and a state folder of its own."""
    values = {"enabled": "yes", "bind": "127.0.0.1", "port": "8443", "tls": "yes",
              "tls_dir": os.path.join(folder, "state", "serve", "tls"), "rate_per_minute": "600",
              "max_upload_mb": "2", "max_pixels": "4000000", "cpu_threads": "1"}
    values.update({key: str(value) for key, value in serve.items()})
    path = os.path.join(folder, "medkiosk.conf")
    with open(path, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = chest, pediatric-pneumonia\nstate_dir = {}\n"
                     "min_free_mb = 1\n\n[serve]\n".format(MODELS, os.path.join(folder, "state")))
        handle.writelines("{} = {}\n".format(key, value) for key, value in sorted(values.items()))
    return path


def medkiosk(*args, **kwargs):
    """Run the real CLI (``python -m edge``) and return the CompletedProcess (text)."""
    # Popen, not run(capture_output=, text=): the edge tests also run under Python 3.6.
    process = subprocess.Popen([sys.executable, "-m", "edge"] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, env=env(), cwd=ROOT)
    out, err = process.communicate(timeout=kwargs.get("timeout", 120))
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


class Server(object):
    """`medkiosk serve --port 0` started in a subprocess; ``stop()`` ends it and returns its log."""

    def __init__(self, folder, **serve):
        self.folder = str(folder)
        self.config = write_config(self.folder, **serve)
        self.state_dir = os.path.join(self.folder, "state")
        self.log_path = os.path.join(self.folder, "serve.log")
        self.process = None
        self.host = self.port = None
        self.tls = serve.get("tls", "yes") == "yes"

    def start(self, timeout=120):
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--config", self.config,
                                             "--port", "0"], stdout=log, stderr=subprocess.STDOUT, env=env(),
                                            cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = READY.search(self.log())
            if match:
                self.host, self.port = match.group(2), int(match.group(3))
                return self
            if self.process.poll() is not None:
                raise AssertionError("medkiosk serve exited {}:\n{}".format(self.process.returncode,
                                                                             self.log()))
            time.sleep(0.2)
        self.stop()
        raise AssertionError("medkiosk serve did not start:\n" + self.log())

    def log(self):
        with open(self.log_path) as handle:
            return handle.read()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        return self.log()

    @property
    def cert(self):
        return os.path.join(self.state_dir, "serve", "tls", "cert.pem")

    def context(self):
        context = ssl.create_default_context(cafile=self.cert)
        return context

    def connection(self, source=None):
        source_address = (source, 0) if source else None
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context(), timeout=60,
                                               source_address=source_address)
        return http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=source_address)

    def request(self, method, path, body=None, headers=None, source=None):
        """-> (status, headers dict, parsed JSON or raw bytes)."""
        connection = self.connection(source)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            kind = response.getheader("Content-Type", "")
            parsed = json.loads(data.decode("utf-8")) if kind.startswith("application/json") else data
            return response.status, dict(response.getheaders()), parsed
        finally:
            connection.close()

    def pair(self, device="test device"):
        """Pair through the real CLI and the real endpoint; return the pair response."""
        code = pairing_code(self.config)
        status, headers, body = self.request("POST", "/api/v1/pair", json.dumps(
            {"code": code, "device": device}), {"Content-Type": "application/json"})
        assert status == 200, body
        body["cookie"] = headers["Set-Cookie"]
        return body

    def token(self, device="test device"):
        return self.pair(device)["token"]

    def cases_on_disk(self):
        folder = os.path.join(self.state_dir, "cases", "images")
        return sorted(name for _dir, _subdirs, names in os.walk(folder) for name in names)

    def peer_fingerprint(self):
        connection = self.connection()
        try:
            connection.connect()
            der = connection.sock.getpeercert(binary_form=True)
        finally:
            connection.close()
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_fixture(name, **settings):
    """A module-scoped fixture: the real service, started in a temporary folder ``name`` with
    ``settings`` (Server's keywords), stopped after the module's last test even if one fails."""

    @pytest.fixture(scope="module")
    def running_server(tmp_path_factory):
        running = Server(tmp_path_factory.mktemp(name), **settings).start()
        try:
            yield running
        finally:
            running.stop()

    return running_server


def pairing_code(config):
    result = medkiosk("serve", "pair", "--config", config)
    assert result.returncode == 0, result.stderr
    return re.search(r"pairing code (\d{6})", result.stdout).group(1)


def bearer(token, **extra):
    headers = {"Authorization": "Bearer " + token}
    headers.update(extra)
    return headers


def multipart(fields, files):
    """(body, content type) for a multipart/form-data request; files: {name: (filename, bytes)}."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append("--{}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n".format(
            boundary, name, value).encode("utf-8"))
    for name, (filename, data) in files.items():
        parts.append("--{}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: "
                     "application/octet-stream\r\n\r\n".format(boundary, name, filename).encode("utf-8"))
        parts.append(data + b"\r\n")
    parts.append("--{}--\r\n".format(boundary).encode("utf-8"))
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


def classify(server, token, data, module="auto", filename="upload.png", extra_headers=None):
    body, kind = multipart({"module": module}, {"image": (filename, data)})
    headers = bearer(token, **{"Content-Type": kind}) if token else {"Content-Type": kind}
    headers.update(extra_headers or {})
    return server.request("POST", "/api/v1/classify", body, headers)


def real_xray(kind="PNEUMONIA", index=0):
    folder = os.path.join(PEDIATRIC, kind)
    return os.path.join(folder, sorted(os.listdir(folder))[index])


def read(path):
    with open(path, "rb") as handle:
        return handle.read()
