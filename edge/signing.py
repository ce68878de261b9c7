"""Signed model bundles: Ed25519 signatures over every file of a bundle (PyCA ``cryptography``).

``signature.json`` in the bundle folder lists every other file with its sha256 and carries an
Ed25519 signature over that list (canonical JSON) made with the maintainer's private key. The device
trusts the public keys in its trusted-keys folders (``/etc/medkiosk/trusted_keys/*.pub``, installed
by ``jetson_setup.sh``) and refuses a bundle whose signature is missing, made by an untrusted key, or
wrong, or whose folder holds a file that is missing from the list, differs from it, or is not listed.
A technician may enable ``developer_mode`` in the config: then such a bundle loads, and every place
that reports on it says "DEVELOPER MODE".

Why ``cryptography`` (docs/technician.md, section 11): it is the well-kept library, it has wheels
for Python 3.6 on aarch64 (``cryptography<41``, pinned in jetson_setup.sh's offline wheelhouse),
and its Ed25519 does not depend on the unit's OpenSSL: Ubuntu 18.04's OpenSSL 1.1.1 cannot sign or
verify Ed25519 from its command line (``pkeyutl -rawin`` came with 3.0) and its own
python3-cryptography 2.1 predates Ed25519. Keys are standard PEM files (PKCS#8 / SubjectPublicKeyInfo)
that OpenSSL 3 reads too. Only keygen, sign and verify need the library; reading a key file does not.
"""

import base64
import hashlib
import json
import os

from edge.bundle_files import read_json_limited, sha256_file, write_json_atomic
from edge.errors import BundleError, MedkioskError, MissingDependencyError
from edge.i18n import N_
from edge.lazy import require

SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "medkiosk-bundle-signature-1"
MAX_SIGNATURE_BYTES = 1 << 20
MAX_BUNDLE_FILES = 10000
TRUSTED_KEYS_ENV = "MEDKIOSK_TRUSTED_KEYS"
SIGNING_KEY_ENV = "MEDKIOSK_SIGNING_KEY"
DEVICE_TRUSTED_KEYS = "/etc/medkiosk/trusted_keys"
SOURCE_TRUSTED_KEYS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "config", "trusted_keys")
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
SIGN_FIX = "sign it with the maintainer's key: medkiosk bundle sign DIR --key KEY"
CRYPTOGRAPHY_HINT = ("pip install 'cryptography>=3.1' (Python 3.6: 'cryptography<41'); on a unit re-run "
                     "jetson_setup.sh, whose wheelhouse carries it")
DEVELOPER_BANNER = N_("DEVELOPER MODE: unsigned bundles allowed")


class SigningError(MedkioskError):
    """A key or the OpenSSL tool cannot be used for signing or verifying."""


class Trust(object):
    """What this unit trusts: the public keys found in ``key_dirs`` and whether developer mode is on."""

    def __init__(self, key_dirs, developer_mode=False, require_library=True):
        self.key_dirs = [str(d) for d in key_dirs]
        self.developer_mode = bool(developer_mode)
        # False only for `selftest --static` (jetson_setup.sh's prediction, run before the venv with
        # cryptography exists): the files are still checked against the signed list.
        self.require_library = bool(require_library)
        self._keys = None
        self.problems = []

    @property
    def keys(self):
        """{key id: path of the .pub file} of every readable Ed25519 public key in the folders.

        A .pub file that is not one is skipped and named in ``problems`` (selftest shows them).
        """
        if self._keys is None:
            keys = {}
            for folder in self.key_dirs:
                if not os.path.isdir(folder):
                    continue
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    if not (name.endswith(".pub") and os.path.isfile(path)):
                        continue
                    try:
                        keys.setdefault(key_id(read_public_key(path)), path)
                    except SigningError as exc:
                        self.problems.append(str(exc))
            self._keys = keys
        return self._keys

    def describe(self):
        mode = "; " + DEVELOPER_BANNER if self.developer_mode else ""
        return "{} trusted key(s) from {}{}".format(len(self.keys), ", ".join(self.key_dirs) or "nowhere",
                                                    mode)

    def __repr__(self):
        return "Trust({!r}, developer_mode={})".format(self.key_dirs, self.developer_mode)


# What the lab's exporter checks a bundle it just wrote with: structure only, any signature or none.
UNCHECKED = Trust([], developer_mode=True)

_process_trust = []


def set_default_trust(trust):
    """Make ``trust`` what ``load_bundle`` uses when it is given none (the CLI sets it from the config)."""
    del _process_trust[:]
    if trust is not None:
        _process_trust.append(trust)


def default_trust():
    """The process's trust: as set from the config, else the built-in folders, never developer mode."""
    if _process_trust:
        return _process_trust[0]
    return Trust(standard_key_dirs(DEVICE_TRUSTED_KEYS))


def trust_from_config(config):
    """The Trust a loaded Config asks for: its [security] trusted_keys folder and developer_mode."""
    security = config.section("security")
    return Trust(standard_key_dirs(security["trusted_keys"]), security["developer_mode"])


def standard_key_dirs(configured):
    """The configured folder, the folders in $MEDKIOSK_TRUSTED_KEYS, and a source checkout's config/."""
    dirs = [configured]
    dirs.extend(d for d in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if d)
    if os.path.isdir(SOURCE_TRUSTED_KEYS):
        dirs.append(SOURCE_TRUSTED_KEYS)
    unique = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def _import_cryptography():
    """Import cryptography without its "Python 3.6 is no longer supported" warning on every command."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Python 3.6 is no longer supported.*")
        return require("cryptography", CRYPTOGRAPHY_HINT)


def cryptography_version():
    """The installed cryptography's version, or None when it cannot be imported."""
    try:
        return str(_import_cryptography().__version__)
    except MissingDependencyError:
        return None


def _ed25519():
    """The cryptography modules for Ed25519 keys and PEM files; MissingDependencyError naming the fix."""
    module = _import_cryptography()
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # cryptography < 2.6 (Ubuntu 18.04's python3-cryptography 2.1)
        raise MissingDependencyError("cryptography {} has no Ed25519 ({}). Install it: {}".format(
            getattr(module, "__version__", "?"), exc, CRYPTOGRAPHY_HINT)) from exc
    return ed25519, serialization


def _pem_body(path, label):
    try:
        with open(str(path)) as handle:
            text = handle.read(1 << 16)
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningError("key {}: cannot be read ({}). Fix: pass a PEM key file made by "
                           "`medkiosk bundle keygen`".format(path, getattr(exc, "strerror", exc))) from exc
    begin, end = "-----BEGIN {}-----".format(label), "-----END {}-----".format(label)
    if begin not in text or end not in text:
        raise SigningError("key {}: is not a PEM {}. Fix: pass the {} file made by `medkiosk bundle keygen`"
                           .format(path, label.lower(), "KEY.pub" if "PUBLIC" in label else "private KEY"))
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except ValueError as exc:
        raise SigningError("key {}: its PEM body is not base64. Fix: make a new key pair with "
                           "`medkiosk bundle keygen`".format(path)) from exc


def read_public_key(path):
    """The raw 32-byte Ed25519 public key in a PEM file; SigningError for anything else."""
    der = _pem_body(path, "PUBLIC KEY")
    if len(der) != 44 or not der.startswith(ED25519_SPKI_PREFIX):
        raise SigningError("key {}: is not an Ed25519 public key. Fix: use keys made by "
                           "`medkiosk bundle keygen` (openssl genpkey -algorithm ed25519)".format(path))
    return der[len(ED25519_SPKI_PREFIX):]


def key_id(raw_public_key):
    """Short, stable name of a public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def keygen(private_path, public_path):
    """Write a new Ed25519 key pair: the private key 0600, the public key beside it. Returns the key id."""
    ed25519, serialization = _ed25519()
    private_path, public_path = str(private_path), str(public_path)
    for path in (private_path, public_path):
        if os.path.exists(path):
            raise SigningError("{}: already exists. Fix: choose another name; never overwrite a key that "
                               "signed bundles".format(path))
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise SigningError("keygen: {} cannot be written ({}). Fix: choose a writable folder".format(
                path, exc.strerror)) from exc
    return key_id(read_public_key(public_path))


def _private_key(path):
    """The Ed25519 private key in a PEM file; SigningError naming the fix for anything else."""
    ed25519, serialization = _ed25519()
    if not os.path.isfile(path):
        raise SigningError("sign: key {} does not exist. Fix: make one with `medkiosk bundle keygen --out "
                           "KEY` or pass the maintainer's key".format(path))
    try:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(1 << 16), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError("sign: {} is not a readable, unencrypted PEM private key ({}). Fix: pass the "
                           "private key made by `medkiosk bundle keygen`".format(path, exc)) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError("sign: {} is not an Ed25519 key. Fix: make one with `medkiosk bundle keygen`"
                           .format(path))
    return key


def bundle_files(path):
    """Relative paths of every file under the bundle folder except signature.json, sorted.

    A symbolic link or anything that is not a regular file is refused: a signed bundle is plain files.
    """
    files = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + names):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            if os.path.islink(full):
                raise BundleError(path, rel, "is a symbolic link", "copy the bundle as plain files")
            if name in names and not os.path.isfile(full):
                raise BundleError(path, rel, "is not a regular file", "copy the bundle as plain files")
        files.extend(os.path.relpath(os.path.join(folder, n), path).replace(os.sep, "/") for n in names)
        if len(files) > MAX_BUNDLE_FILES:
            raise BundleError(path, "folder", "holds more than {} files".format(MAX_BUNDLE_FILES),
                              "pass the bundle folder itself")
    return sorted(f for f in files if f != SIGNATURE_FILE)


def _payload(files, signer):
    """The exact bytes that are signed: canonical JSON of the format, the key id and the file hashes."""
    body = {"format": SIGNATURE_FORMAT, "key_id": signer, "files": files}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _file_hashes(path, names):

    return {name: sha256_file(os.path.join(path, name)) for name in names}


def sign_bundle(path, private_key):
    """Sign every file of the bundle folder ``path`` with ``private_key``; write signature.json."""

    _module, serialization = _ed25519()
    path, private_key = str(path), str(private_key)
    if not os.path.isdir(path):
        raise SigningError("sign {}: is not a folder. Fix: pass the bundle folder".format(path))
    key = _private_key(private_key)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signer = key_id(public)
    files = _file_hashes(path, bundle_files(path))
    signature = base64.b64encode(key.sign(_payload(files, signer))).decode("ascii")
    write_json_atomic(os.path.join(path, SIGNATURE_FILE), {
        "format": SIGNATURE_FORMAT, "key_id": signer, "files": files, "signature": signature})
    return signer


def _read_signature(path):

    sig_path = os.path.join(path, SIGNATURE_FILE)
    if not os.path.isfile(sig_path):
        raise BundleError(path, SIGNATURE_FILE, "missing: the bundle is not signed", SIGN_FIX)
    data = read_json_limited(path, sig_path, SIGNATURE_FILE, MAX_SIGNATURE_BYTES)
    files = data.get("files") if isinstance(data, dict) else None
    ok = (isinstance(data, dict) and data.get("format") == SIGNATURE_FORMAT
          and isinstance(data.get("key_id"), str) and isinstance(data.get("signature"), str)
          and isinstance(files, dict) and all(isinstance(v, str) for v in files.values()))
    if not ok:
        raise BundleError(path, SIGNATURE_FILE, "is not a {} file".format(SIGNATURE_FORMAT), SIGN_FIX)
    return data


def _verify(path, public_key, payload, signature):
    """Raise BundleError unless ``signature`` (base64) is the key's Ed25519 signature of ``payload``."""
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        raw_signature = b""
    if len(raw_signature) != 64:
        raise BundleError(path, SIGNATURE_FILE, "the signature is not a 64-byte Ed25519 signature", SIGN_FIX)
    ed25519, _serialization = _ed25519()
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(read_public_key(public_key)).verify(raw_signature, payload)
    except InvalidSignature:
        raise BundleError(path, SIGNATURE_FILE, "the signature does not match its file list (edited after "
                          "signing)", "copy the bundle again from its source, or " + SIGN_FIX) from None


def check_signature(path, trust):
    """Raise BundleError unless the bundle at ``path`` is signed by a trusted key and unchanged.

    Returns (the signer's key id, None), or (key id, note) when ``trust.require_library`` is off and
    the signature itself could not be verified here.
    """
    data = _read_signature(path)
    signer = data["key_id"]
    public_key = trust.keys.get(signer)
    if public_key is None:
        where = trust.key_dirs[0] if trust.key_dirs else DEVICE_TRUSTED_KEYS
        raise BundleError(path, SIGNATURE_FILE, "signed by key {}, which this unit does not trust "
                          "({})".format(signer, trust.describe()), "install the maintainer's public key in "
                          "{} (jetson_setup.sh does), or re-sign the bundle with a trusted key".format(where))
    note = None
    try:
        _verify(path, public_key, _payload(data["files"], signer), data["signature"])
    except MissingDependencyError as exc:
        if trust.require_library:
            raise BundleError(path, SIGNATURE_FILE, "cannot be checked ({})".format(exc),
                              CRYPTOGRAPHY_HINT) from exc
        note = ("files match the signed list; the signature itself is not verified here (cryptography "
                "is not installed for this Python; the unit's venv has it)")
    listed, present = set(data["files"]), set(bundle_files(path))
    missing, added = sorted(listed - present), sorted(present - listed)
    if missing:
        raise BundleError(path, missing[0], "is signed but missing from the folder", "copy the complete "
                          "bundle folder again from its source")
    if added:
        raise BundleError(path, added[0], "is in the folder but not signed (added after signing)",
                          "delete it, or copy the bundle again from its source")
    for name, expected in sorted(_file_hashes(path, sorted(listed)).items()):
        if expected != data["files"][name]:
            raise BundleError(path, name, "differs from the signed file (edited after signing)",
                              "copy the bundle again from its source; never edit a signed bundle by hand")
    return signer, note


def signature_status(path, trust):
    """(key id or None, problem or None): what ``load_bundle`` records; raises unless developer mode."""
    if trust is UNCHECKED:
        return None, "not checked (a lab tool reading a bundle it made)"
    try:
        return check_signature(path, trust)
    except BundleError as exc:
        if not trust.developer_mode:
            raise
        return None, "{} ({})".format(DEVELOPER_BANNER, exc)


def signing_key_from_env():
    """The lab's signing key from $MEDKIOSK_SIGNING_KEY, or None (the exporter then leaves it unsigned)."""
    return os.environ.get(SIGNING_KEY_ENV) or None
