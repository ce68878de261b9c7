"""Pairing codes and per-device tokens, kept under ``<state_dir>/serve/`` (folder 0700, files 0600).

A pairing code is six digits, shown on the kiosk screen (P, edge.kiosk.pairing) or printed by
``medkiosk serve pair``, valid for ``pair_minutes`` and for one device; five wrong tries void it.
Redeeming it issues a random device token (256 bits); only its SHA-256 is stored, with the device's
name and an expiry. The files are how the processes share them: the kiosk (which has no network at
all: its unit has PrivateNetwork=yes) or ``medkiosk serve pair`` writes the code's hash, the service
redeems it, all as the unit's user in its private state directory. The plain code never touches
the disk: it lives in the memory of the process that shows it.
"""

import hashlib
import hmac
import json
import os
import secrets
import threading
import time

from edge.caselog import write_file_atomic
from edge.serve.errors import AuthError

SERVE_DIR = "serve"
PAIRING_FILE = "pairing.json"
TOKENS_FILE = "tokens.json"
SECRET_FILE = "secret"
CODE_DIGITS = 6
CODE_TRIES = 5
MAX_DEVICE_NAME = 40


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_json(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise AuthError("pairing store {} cannot be read ({}). Fix: delete it and pair the devices "
                        "again".format(path, exc), status=500, code="store_damaged") from exc


def _write_json(path, data):
    write_file_atomic(path, json.dumps(data, sort_keys=True).encode("utf-8"))


class DeviceStore(object):
    """Pairing codes, device tokens and the CSRF secret of one unit."""

    def __init__(self, state_dir, pair_seconds=300, token_seconds=90 * 86400, clock=time.time):
        self.root = os.path.join(str(state_dir), SERVE_DIR)
        self.pair_seconds = int(pair_seconds)
        self.token_seconds = int(token_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._secret = None

    def _path(self, name):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        return os.path.join(self.root, name)

    def new_code(self):
        """A fresh pairing code (replacing any earlier one) -> (code, expiry as epoch seconds)."""
        code = "".join(str(secrets.randbelow(10)) for _ in range(CODE_DIGITS))
        expires = int(self.clock()) + self.pair_seconds
        with self._lock:
            _write_json(self._path(PAIRING_FILE), {"sha256": _digest(code), "expires": expires,
                                                   "tries": CODE_TRIES})
        return code, expires

    def code_status(self, code):
        """What became of ``code`` (issued by this unit): "active", "expired", or "ended" (redeemed,
        voided by wrong tries, cancelled or replaced by a newer code)."""
        with self._lock:
            pairing = _read_json(self._path(PAIRING_FILE), None)
        if pairing is None or not hmac.compare_digest(_digest(str(code)), pairing["sha256"]):
            return "ended"
        return "expired" if self.clock() > pairing["expires"] else "active"

    def cancel_code(self, code):
        """Void ``code`` if it is still the pending one (the kiosk closed its panel); True if it was."""
        with self._lock:
            path = self._path(PAIRING_FILE)
            pairing = _read_json(path, None)
            if pairing is None or not hmac.compare_digest(_digest(str(code)), pairing["sha256"]):
                return False
            os.unlink(path)
        return True

    def redeem(self, code, device_name):
        """Pairing code -> a new device token (shown once); AuthError when wrong, used or expired."""
        name = " ".join(str(device_name or "device").split())[:MAX_DEVICE_NAME] or "device"
        with self._lock:
            path = self._path(PAIRING_FILE)
            pairing = _read_json(path, None)
            if pairing is None:
                raise AuthError("no pairing code is active. Fix: run `medkiosk serve pair` on the kiosk "
                                "and type the code it shows", code="no_pairing_code")
            if self.clock() > pairing["expires"]:
                os.unlink(path)
                raise AuthError("the pairing code has expired. Fix: make a new one with `medkiosk serve "
                                "pair`", code="pairing_code_expired")
            if not hmac.compare_digest(_digest(str(code).strip()), pairing["sha256"]):
                pairing["tries"] -= 1
                if pairing["tries"] <= 0:
                    os.unlink(path)
                else:
                    _write_json(path, pairing)
                raise AuthError("wrong pairing code ({} tries left). Fix: type the code shown by `medkiosk "
                                "serve pair`".format(max(0, pairing["tries"])), code="wrong_pairing_code")
            os.unlink(path)
            token = secrets.token_urlsafe(32)
            now = int(self.clock())
            tokens = _read_json(self._path(TOKENS_FILE), {})
            tokens[_digest(token)] = {"device": name, "created": now, "expires": now + self.token_seconds}
            _write_json(self._path(TOKENS_FILE), tokens)
        return token

    def authenticate(self, token):
        """Token -> its record {"id", "device", "expires"}; AuthError when missing, unknown or expired."""
        if not token:
            raise AuthError("no device token. Fix: pair this device with the code from `medkiosk serve "
                            "pair`", code="missing_token")
        token_id = _digest(token)
        with self._lock:
            record = _read_json(self._path(TOKENS_FILE), {}).get(token_id)
        if record is None:
            raise AuthError("unknown device token. Fix: pair this device again", code="wrong_token")
        if self.clock() > record["expires"]:
            raise AuthError("the device token has expired. Fix: pair this device again",
                            code="expired_token")
        return dict(record, id=token_id)

    def devices(self):
        """[{"id", "device", "created", "expires"}] of the paired devices."""
        with self._lock:
            tokens = _read_json(self._path(TOKENS_FILE), {})
        return [dict(record, id=token_id[:12]) for token_id, record in sorted(tokens.items())]

    def revoke(self, prefix):
        """Remove the tokens whose id starts with ``prefix`` (at least 6 characters); return how many."""
        prefix = str(prefix)
        if len(prefix) < 6:
            raise AuthError("device id {!r} is too short. Fix: give at least 6 characters from `medkiosk "
                            "serve devices`".format(prefix), code="bad_device_id")
        with self._lock:
            path = self._path(TOKENS_FILE)
            tokens = _read_json(path, {})
            kept = {k: v for k, v in tokens.items() if not k.startswith(prefix)}
            _write_json(path, kept)
        return len(tokens) - len(kept)

    def csrf_token(self, token_id):
        """The CSRF token that goes with one device token (HMAC of its id under the unit's secret)."""
        return hmac.new(self._load_secret(), token_id.encode("ascii"), hashlib.sha256).hexdigest()

    def _load_secret(self):
        with self._lock:
            if self._secret is None:
                path = self._path(SECRET_FILE)
                if not os.path.exists(path):
                    write_file_atomic(path, secrets.token_bytes(32))
                with open(path, "rb") as handle:
                    self._secret = handle.read()
            return self._secret
