"""edge.signing's key files and trust description, pinned exactly (issue 18: mutation survivors).

Real Ed25519 keys made by ``keygen`` in a temporary folder (never the maintainer's), real files.
"""

import os
import stat

import pytest

pytest.importorskip("cryptography")

from edge.signing import (  # noqa: E402 (after the skip: cryptography is optional on a unit)
    DEVELOPER_BANNER,
    TRUSTED_KEYS_ENV,
    SigningError,
    Trust,
    key_id,
    keygen,
    read_public_key,
    sign_bundle,
    standard_key_dirs,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_writes_a_private_0600_and_a_public_0644_key(tmp_path):
    private, public = str(tmp_path / "k.key"), str(tmp_path / "k.pub")
    old = os.umask(0)
    try:
        signer = keygen(private, public)
    finally:
        os.umask(old)
    assert (_mode(private), _mode(public)) == (0o600, 0o644)
    assert signer == key_id(read_public_key(public))
    with open(private) as handle:
        assert handle.read().startswith("-----BEGIN PRIVATE KEY-----\n")
    with open(public) as handle:
        assert handle.read().startswith("-----BEGIN PUBLIC KEY-----\n")
    for existing in (private, public):
        with pytest.raises(SigningError) as info:
            keygen(existing if existing == private else str(tmp_path / "other.key"),
                   existing if existing == public else str(tmp_path / "other.pub"))
        assert str(info.value) == ("{}: already exists. Fix: choose another name; never overwrite a key that "
                                   "signed bundles".format(existing))
    assert sorted(os.listdir(str(tmp_path))) == ["k.key", "k.pub"]


def test_keygen_into_a_missing_folder_names_the_cause(tmp_path):
    path = str(tmp_path / "no-such" / "k.key")
    with pytest.raises(SigningError) as info:
        keygen(path, path + ".pub")
    assert str(info.value) == ("keygen: {} cannot be written (No such file or directory). Fix: choose a "
                               "writable folder".format(path))


def test_signing_with_a_missing_or_unreadable_key_is_refused(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"x")
    missing = str(tmp_path / "none.key")
    with pytest.raises(SigningError) as info:
        sign_bundle(str(bundle), missing)
    assert str(info.value) == ("sign: key {} does not exist. Fix: make one with `medkiosk bundle keygen "
                               "--out KEY` or pass the maintainer's key".format(missing))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    with pytest.raises(SigningError) as info:
        sign_bundle(str(bundle), str(garbage))
    prefix = "sign: {} is not a readable, unencrypted PEM private key (".format(garbage)
    assert str(info.value).startswith(prefix)
    assert str(info.value).endswith("). Fix: pass the private key made by `medkiosk bundle keygen`")
    assert not (bundle / "signature.json").exists()
    key = str(tmp_path / "k.key")
    signer = keygen(key, key + ".pub")
    assert sign_bundle(str(bundle), key) == signer and (bundle / "signature.json").is_file()


def test_trust_describes_its_keys_folders_and_mode(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    keygen(str(tmp_path / "a.key"), str(keys / "a.pub"))
    keygen(str(tmp_path / "b.key"), str(keys / "b.pub"))
    (keys / "notes.txt").write_text("not a key")
    trust = Trust([keys, tmp_path / "absent"])
    assert trust.describe() == "2 trusted key(s) from {}, {}".format(keys, tmp_path / "absent")
    absent = str(tmp_path / "absent")
    assert repr(trust) == "Trust([{!r}, {!r}], developer_mode=False)".format(str(keys), absent)
    developer = Trust([], developer_mode=True)
    assert developer.describe() == "0 trusted key(s) from nowhere; " + DEVELOPER_BANNER
    assert repr(developer) == "Trust([], developer_mode=True)"


def test_standard_key_dirs_are_configured_then_environment_without_repeats(tmp_path, monkeypatch):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    monkeypatch.setenv(TRUSTED_KEYS_ENV, os.pathsep.join([two, "", one, two]))
    dirs = standard_key_dirs(one)
    assert dirs[:2] == [one, two]
    assert len(dirs) == len(set(dirs)) and "" not in dirs


def test_sign_refuses_what_is_not_a_folder(tmp_path):
    key = str(tmp_path / "k.key")
    keygen(key, key + ".pub")
    none = str(tmp_path / "none")
    with pytest.raises(SigningError) as info:
        sign_bundle(none, key)
    assert str(info.value) == "sign {}: is not a folder. Fix: pass the bundle folder".format(none)


@pytest.mark.parametrize("content, problem", [
    (None, "missing: the bundle is not signed"),
    ("[1, 2]", "is not a medkiosk-bundle-signature-1 file"),
    ('{"format": "medkiosk-bundle-signature-1", "key_id": "k", "signature": "s", "files": []}',
     "is not a medkiosk-bundle-signature-1 file"),
    ('{"format": "medkiosk-bundle-signature-1", "key_id": "k", "signature": "s", "files": {"a": 1}}',
     "is not a medkiosk-bundle-signature-1 file"),
    ('{"format": "medkiosk-bundle-signature-1", "key_id": "k", "signature": 7, "files": {}}',
     "is not a medkiosk-bundle-signature-1 file"),
])
def test_a_missing_or_malformed_signature_file_is_refused_by_name(tmp_path, content, problem):
    from edge.errors import BundleError
    from edge.signing import SIGN_FIX, check_signature

    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    if content is not None:
        (folder / "signature.json").write_text(content)
    with pytest.raises(BundleError) as info:
        check_signature(str(folder), Trust([]))
    error = info.value
    assert (error.bundle, error.field, error.problem, error.fix) == (str(folder), "signature.json", problem,
                                                                    SIGN_FIX)


def _signed(tmp_path):
    """A folder signed with a fresh key, and a Trust holding that key's public half."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = str(tmp_path / "k.key")
    keygen(key, str(keys / "k.pub"))
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    sign_bundle(str(folder), key)
    return str(folder), Trust([keys])


def _resave_signature(folder, change):
    import json

    path = os.path.join(folder, "signature.json")
    with open(path) as handle:
        data = json.load(handle)
    change(data)
    with open(path, "w") as handle:
        json.dump(data, handle)


@pytest.mark.parametrize("change, problem, fix", [
    # non-base64 characters inside a valid signature: refused, never skipped (validate=True)
    (lambda d: d.update(signature=d["signature"][:10] + "!" + d["signature"][10:]),
     "the signature is not a 64-byte Ed25519 signature", None),
    (lambda d: d.update(signature="QUJD"), "the signature is not a 64-byte Ed25519 signature", None),
    (lambda d: d.update(signature="A" * 86 + "=="),
     "the signature does not match its file list (edited after signing)",
     "copy the bundle again from its source, or "),
])
def test_a_bad_signature_is_refused_with_its_reason(tmp_path, change, problem, fix):
    from edge.errors import BundleError
    from edge.signing import SIGN_FIX, check_signature

    folder, trust = _signed(tmp_path)
    assert check_signature(folder, trust)[1] is None  # the helper's bundle is valid
    _resave_signature(folder, change)
    with pytest.raises(BundleError) as info:
        check_signature(folder, trust)
    error = info.value
    assert (error.bundle, error.field, error.problem, error.fix) == (folder, "signature.json", problem,
                                                                    (fix or "") + SIGN_FIX)


def test_each_file_refusal_names_the_file_problem_and_fix(tmp_path):
    from edge.errors import BundleError
    from edge.signing import check_signature

    folder, trust = _signed(tmp_path)

    def refusal(check_trust=trust):
        with pytest.raises(BundleError) as info:
            check_signature(folder, check_trust)
        return info.value.bundle, info.value.field, info.value.problem, info.value.fix

    stranger = Trust([tmp_path / "nowhere"])
    signer = check_signature(folder, trust)[0]
    assert refusal(stranger) == (folder, "signature.json", "signed by key {}, which this unit does not trust "
                                 "(0 trusted key(s) from {})".format(signer, tmp_path / "nowhere"),
                                 "install the maintainer's public key in {} (jetson_setup.sh does), or "
                                 "re-sign the bundle with a trusted key".format(tmp_path / "nowhere"))
    (tmp_path / "b" / "extra.txt").write_text("added")
    assert refusal() == (folder, "extra.txt", "is in the folder but not signed (added after signing)",
                         "delete it, or copy the bundle again from its source")
    os.remove(os.path.join(folder, "extra.txt"))
    (tmp_path / "b" / "model.onnx").write_bytes(b"edited")
    assert refusal() == (folder, "model.onnx", "differs from the signed file (edited after signing)",
                         "copy the bundle again from its source; never edit a signed bundle by hand")
    os.remove(os.path.join(folder, "model.onnx"))
    assert refusal() == (folder, "model.onnx", "is signed but missing from the folder",
                         "copy the complete bundle folder again from its source")
