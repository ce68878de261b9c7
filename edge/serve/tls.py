"""The unit's own TLS key and self-signed certificate, made on the unit (openssl CLI) at set-up.

No certificate authority is reachable offline, so the certificate is self-signed; a device checks
it once at pairing by its SHA-256 fingerprint, which ``medkiosk serve pair`` prints beside the code.
"""

import hashlib
import os
import shutil
import ssl
import subprocess

from edge.errors import MedkioskError

KEY_NAME = "key.pem"
CERT_NAME = "cert.pem"
VALID_DAYS = 3650


class TLSError(MedkioskError):
    """The TLS key or certificate cannot be made or read."""


def paths(tls_dir):
    return os.path.join(str(tls_dir), KEY_NAME), os.path.join(str(tls_dir), CERT_NAME)


def make_certificate(tls_dir, address, force=False):
    """Make key.pem (0600) and cert.pem for ``address`` in ``tls_dir`` unless they exist; return paths."""
    key, cert = paths(tls_dir)
    if os.path.isfile(key) and os.path.isfile(cert) and not force:
        return key, cert
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("openssl is not installed, so no TLS key can be made. Fix: sudo apt install openssl, "
                       "then run `medkiosk serve tls`")
    os.makedirs(str(tls_dir), mode=0o700, exist_ok=True)
    os.chmod(str(tls_dir), 0o700)
    kind = "IP" if _is_ip(address) else "DNS"
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", key + ".tmp", "-out", cert + ".tmp", "-days", str(VALID_DAYS),
               "-subj", "/CN=medkiosk", "-addext", "subjectAltName={}:{}".format(kind, address)]
    old_umask = os.umask(0o077)
    try:
        # Popen, not run(capture_output=, text=): those need Python 3.7, the Nano has 3.6.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _out, err = process.communicate()
    finally:
        os.umask(old_umask)
    if process.returncode != 0:
        last = (err.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise TLSError("openssl could not make the TLS key ({}). Fix: check that {} is writable and "
                       "openssl >= 1.1.1 is installed".format(last, tls_dir))
    os.chmod(key + ".tmp", 0o600)
    os.rename(key + ".tmp", key)
    os.rename(cert + ".tmp", cert)
    return key, cert


def _is_ip(address):
    import ipaddress

    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        return False
    return True


def fingerprint(cert_path):
    """SHA-256 fingerprint of a PEM certificate, as AA:BB:... (what browsers show)."""
    try:
        with open(cert_path) as handle:
            der = ssl.PEM_cert_to_DER_cert(handle.read())
    except (OSError, ValueError) as exc:
        raise TLSError("certificate {} cannot be read ({}). Fix: make it again with `medkiosk serve tls "
                       "--force`".format(cert_path, exc)) from exc
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
