"""edge.signing's refusals and defaults, each message pinned (issue 18: survivors of test_signing*.py).

Real Ed25519 keys from ``keygen`` in a temporary folder, real bundle folders (a copy of the signed
test bundle), real symbolic links and FIFOs. Where cryptography must be absent, ``_ed25519`` is
made to raise the MissingDependencyError it raises then (cryptography is installed here).
Python 3.6 compatible.
"""

import os
import shutil

import pytest

pytest.importorskip("cryptography")

import edge.signing as signing  # noqa: E402 (after the skip: cryptography is optional on a unit)
from edge.errors import BundleError, MissingDependencyError  # noqa: E402
from edge.signing import (  # noqa: E402
    CRYPTOGRAPHY_HINT,
    DEVICE_TRUSTED_KEYS,
    SIGNING_KEY_ENV,
    SOURCE_TRUSTED_KEYS,
    TRUSTED_KEYS_ENV,
    UNCHECKED,
    SigningError,
    Trust,
    bundle_files,
    check_signature,
    cryptography_version,
    default_trust,
    keygen,
    set_default_trust,
    sign_bundle,
    signature_status,
    signing_key_from_env,
    standard_key_dirs,
)


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    keygen(str(folder / "lab.key"), str(folder / "lab.pub"))
    return folder


@pytest.fixture
def signed(tmp_path, tiny_bundle, keys):
    bundle = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, bundle)
    sign_bundle(bundle, str(keys / "lab.key"))
    return bundle


# --- the private key -------------------------------------------------------------------------------

def test_a_key_that_is_not_ed25519_is_named(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = str(tmp_path / "ec.key")
    with open(path, "wb") as handle:
        handle.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SigningError) as caught:
        sign_bundle(str(tmp_path), path)
    assert str(caught.value) == ("sign: {} is not an Ed25519 key. Fix: make one with `medkiosk bundle keygen`"
                                 .format(path))


def test_an_unreadable_key_says_why(tmp_path):
    path = str(tmp_path / "junk.key")
    with open(path, "w") as handle:
        handle.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningError) as caught:
        sign_bundle(str(tmp_path), path)
    message = str(caught.value)
    assert message.startswith("sign: {} is not a readable, unencrypted PEM private key (".format(path))
    assert "(None)" not in message and message.endswith(
        "). Fix: pass the private key made by `medkiosk bundle keygen`")


def test_a_key_file_is_read_up_to_64_kib(tmp_path, keys):
    """A key is a few hundred bytes; a file whose key starts past 64 KiB is not read that far."""
    with open(str(keys / "lab.key")) as handle:
        pem = handle.read()
    near = str(tmp_path / "near.key")
    with open(near, "w") as handle:
        handle.write("#" * ((1 << 16) - len(pem) - 1) + "\n" + pem)  # the key ends inside 64 KiB
    assert sign_bundle(str(tmp_path / "keys"), near)
    far = str(tmp_path / "far.key")
    with open(far, "w") as handle:
        handle.write("#" * (1 << 16) + "\n" + pem)
    with pytest.raises(SigningError, match="is not a readable, unencrypted PEM private key"):
        sign_bundle(str(tmp_path / "keys"), far)


# --- the signature file and the folder ---------------------------------------------------------------

def test_a_signature_file_that_is_not_json_names_the_bundle_and_the_file(signed):
    with open(os.path.join(signed, "signature.json"), "w") as handle:
        handle.write("{not json")
    with pytest.raises(BundleError) as caught:
        check_signature(signed, Trust([]))
    assert str(caught.value).startswith("bundle {}: signature.json: is not valid JSON (".format(signed))


def test_a_symbolic_link_in_a_subfolder_is_named_by_its_bundle_path(tmp_path):
    folder = tmp_path / "b"
    (folder / "golden").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"x")
    os.symlink(str(folder / "model.onnx"), str(folder / "golden" / "link.png"))
    with pytest.raises(BundleError) as caught:
        bundle_files(str(folder))
    assert str(caught.value) == ("bundle {}: golden/link.png: is a symbolic link. Fix: copy the bundle as "
                                 "plain files".format(folder))


def test_a_fifo_is_not_a_regular_file(tmp_path):
    folder = tmp_path / "b"
    (folder / "golden").mkdir(parents=True)
    os.mkfifo(str(folder / "golden" / "pipe"))
    with pytest.raises(BundleError) as caught:
        bundle_files(str(folder))
    assert str(caught.value) == ("bundle {}: golden/pipe: is not a regular file. Fix: copy the bundle as "
                                 "plain files".format(folder))


# --- trust ---------------------------------------------------------------------------------------------

def test_an_untrusted_signer_with_no_key_folders_points_at_the_device_folder(signed):
    with pytest.raises(BundleError) as caught:
        check_signature(signed, Trust([]))
    assert "install the maintainer's public key in {} (jetson_setup.sh does)".format(
        DEVICE_TRUSTED_KEYS) in str(caught.value)


def test_missing_cryptography_refuses_or_notes(signed, keys, monkeypatch):
    def absent():
        raise MissingDependencyError("no cryptography here")

    monkeypatch.setattr(signing, "_ed25519", absent)
    with pytest.raises(BundleError) as caught:
        check_signature(signed, Trust([str(keys)]))
    assert str(caught.value) == ("bundle {}: signature.json: cannot be checked (no cryptography here). "
                                 "Fix: {}".format(signed, CRYPTOGRAPHY_HINT))
    signer, note = check_signature(signed, Trust([str(keys)], require_library=False))
    assert signer and note == ("files match the signed list; the signature itself is not verified here "
                               "(cryptography is not installed for this Python; the unit's venv has it)")


def test_cryptography_version_is_the_library_s_or_none(monkeypatch):
    import cryptography

    assert cryptography_version() == cryptography.__version__

    def absent():
        raise MissingDependencyError("no cryptography here")

    monkeypatch.setattr(signing, "_import_cryptography", absent)
    assert cryptography_version() is None


def test_default_trust_is_the_one_set_else_the_device_folder():
    mine = Trust(["/nowhere"])
    try:
        set_default_trust(mine)
        assert default_trust() is mine
        set_default_trust(None)
        built_in = default_trust()
        assert built_in is not mine and built_in.key_dirs[0] == DEVICE_TRUSTED_KEYS
        assert not built_in.developer_mode
    finally:
        set_default_trust(None)


def test_a_lab_tool_reading_its_own_bundle_is_not_checked(tmp_path):
    assert signature_status(str(tmp_path), UNCHECKED) == (None, "not checked (a lab tool reading a bundle "
                                                                "it made)")


def test_signing_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, "/keys/lab.key")
    assert signing_key_from_env() == "/keys/lab.key"
    monkeypatch.setenv(SIGNING_KEY_ENV, "")
    assert signing_key_from_env() is None
    monkeypatch.delenv(SIGNING_KEY_ENV)
    assert signing_key_from_env() is None


def test_key_folders_without_the_environment_variable(monkeypatch):
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    expected = ["/etc/x"] + ([SOURCE_TRUSTED_KEYS] if os.path.isdir(SOURCE_TRUSTED_KEYS) else [])
    assert standard_key_dirs("/etc/x") == expected


# --- public keys, the signed payload, Trust's defaults -----------------------------------------------

def test_a_public_key_file_that_is_not_text_says_it_cannot_be_read(tmp_path):
    from edge.signing import read_public_key

    path = str(tmp_path / "binary.pub")
    with open(path, "wb") as handle:
        handle.write(b"\xff\xfe\x00binary")
    with pytest.raises(SigningError) as caught:
        read_public_key(path)
    message = str(caught.value)
    assert message.startswith("key {}: cannot be read (".format(path)) and "codec can't decode" in message
    assert message.endswith("). Fix: pass a PEM key file made by `medkiosk bundle keygen`")


def test_a_public_key_file_is_read_up_to_64_kib(tmp_path, keys):
    from edge.signing import read_public_key

    with open(str(keys / "lab.pub")) as handle:
        pem = handle.read()
    near, far = str(tmp_path / "near.pub"), str(tmp_path / "far.pub")
    with open(near, "w") as handle:
        handle.write("#" * ((1 << 16) - len(pem) - 1) + "\n" + pem)
    assert len(read_public_key(near)) == 32
    with open(far, "w") as handle:
        handle.write("#" * (1 << 16) + "\n" + pem)
    with pytest.raises(SigningError, match="is not a PEM public key"):
        read_public_key(far)


def test_a_bundle_with_a_non_ascii_file_name_signs_and_verifies(signed, keys):
    with open(os.path.join(signed, "golden", "Röntgen-ß.txt"), "w") as handle:
        handle.write("a note")
    signer = sign_bundle(signed, str(keys / "lab.key"))
    assert check_signature(signed, Trust([str(keys)])) == (signer, None)


def test_trust_requires_the_library_by_default():
    trust = Trust([])
    assert trust.require_library is True and trust.developer_mode is False
    assert Trust([], require_library=0).require_library is False


def test_a_key_path_that_is_a_folder_names_the_os_error(tmp_path):
    from edge.signing import read_public_key

    with pytest.raises(SigningError) as caught:
        read_public_key(str(tmp_path))
    assert str(caught.value) == ("key {}: cannot be read (Is a directory). Fix: pass a PEM key file made by "
                                 "`medkiosk bundle keygen`".format(tmp_path))


@pytest.mark.parametrize("text", ["just some text\n", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
                                  "MCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"],
                         ids=["no-markers", "no-end", "no-begin"])
def test_a_file_without_both_pem_markers_is_not_a_pem_public_key(tmp_path, text):
    from edge.signing import read_public_key

    path = str(tmp_path / "odd.pub")
    with open(path, "w") as handle:
        handle.write(text)
    with pytest.raises(SigningError) as caught:
        read_public_key(path)
    assert str(caught.value) == ("key {}: is not a PEM public key. Fix: pass the KEY.pub file made by "
                                 "`medkiosk bundle keygen`".format(path))


def test_the_pem_reader_names_a_private_key_file_too(tmp_path):
    path = str(tmp_path / "odd.key")
    with open(path, "w") as handle:
        handle.write("no markers\n")
    with pytest.raises(SigningError) as caught:
        signing._pem_body(path, "PRIVATE KEY")
    assert str(caught.value) == ("key {}: is not a PEM private key. Fix: pass the private KEY file made by "
                                 "`medkiosk bundle keygen`".format(path))


def _pem(path):
    with open(path) as handle:
        return handle.read()


def test_a_public_key_wrapped_over_several_lines_is_the_same_key(tmp_path, keys):
    from edge.signing import read_public_key

    lines = _pem(str(keys / "lab.pub")).splitlines()
    body = "".join(lines[1:-1])
    wrapped = str(tmp_path / "wrapped.pub")
    with open(wrapped, "w") as handle:
        handle.write("\n".join([lines[0], body[:20], body[20:41], body[41:], lines[-1]]) + "\n")
    assert read_public_key(wrapped) == read_public_key(str(keys / "lab.pub"))


def test_the_first_of_two_pem_blocks_is_the_key(tmp_path, keys):
    from edge.signing import read_public_key

    keygen(str(tmp_path / "other.key"), str(tmp_path / "other.pub"))
    both = str(tmp_path / "both.pub")
    with open(both, "w") as handle:
        handle.write(_pem(str(keys / "lab.pub")) + _pem(str(tmp_path / "other.pub")))
    assert read_public_key(both) == read_public_key(str(keys / "lab.pub"))


def test_a_pem_body_with_a_character_outside_base64_is_refused(tmp_path, keys):
    from edge.signing import read_public_key

    lines = _pem(str(keys / "lab.pub")).splitlines()
    broken = str(tmp_path / "broken.pub")
    with open(broken, "w") as handle:
        handle.write("\n".join([lines[0], lines[1][:10] + "!" + lines[1][10:], lines[-1]]) + "\n")
    with pytest.raises(SigningError) as caught:
        read_public_key(broken)
    assert str(caught.value) == ("key {}: its PEM body is not base64. Fix: make a new key pair with "
                                 "`medkiosk bundle keygen`".format(broken))


# --- the library itself ----------------------------------------------------------------------------------

def test_a_cryptography_without_ed25519_names_its_version_and_the_fix(monkeypatch):
    """cryptography < 2.6 (Ubuntu 18.04's python3-cryptography 2.1) has no Ed25519 module."""
    import sys

    import cryptography
    from cryptography.hazmat.primitives import asymmetric

    monkeypatch.delattr(asymmetric, "ed25519")  # as if the submodule did not exist
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    with pytest.raises(MissingDependencyError) as caught:
        signing._ed25519()
    message = str(caught.value)
    assert message.startswith("cryptography {} has no Ed25519 (".format(cryptography.__version__))
    assert "ed25519" in message.split("(", 1)[1] and message.endswith("). Install it: " + CRYPTOGRAPHY_HINT)


def test_only_the_python_3_6_warning_of_cryptography_is_silenced(monkeypatch):
    import warnings

    asked = []

    def noisy_require(name, hint):
        asked.append((name, hint))
        warnings.warn("Python 3.6 is no longer supported by the Python core team", UserWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return "module"

    monkeypatch.setattr(signing, "require", noisy_require)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert signing._import_cryptography() == "module"
    assert [str(w.message) for w in caught] == ["something else"]
    assert asked == [("cryptography", CRYPTOGRAPHY_HINT)]


def test_a_folder_with_more_files_than_a_bundle_has_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(signing, "MAX_BUNDLE_FILES", 3)
    for index in range(3):
        (tmp_path / "f{}".format(index)).write_bytes(b"x")
    assert bundle_files(str(tmp_path)) == ["f0", "f1", "f2"]  # at the limit
    (tmp_path / "f3").write_bytes(b"x")
    with pytest.raises(BundleError) as caught:
        bundle_files(str(tmp_path))
    assert str(caught.value) == ("bundle {}: folder: holds more than 3 files. Fix: pass the bundle folder "
                                 "itself".format(tmp_path))


@pytest.mark.parametrize("kind", ["x25519", "ed25519-prefix-wrong-length"])
def test_a_public_key_that_is_not_ed25519_is_named(tmp_path, keys, kind):
    """An X25519 key (44 bytes, another algorithm) or the Ed25519 prefix on a wrong-length key."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    from edge.signing import ED25519_SPKI_PREFIX, read_public_key

    if kind == "x25519":
        der = x25519.X25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert len(der) == 44 and not der.startswith(ED25519_SPKI_PREFIX)
    else:
        der = ED25519_SPKI_PREFIX + b"\x01" * 33
    path = str(tmp_path / "other.pub")
    with open(path, "w") as handle:
        handle.write("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n".format(
            base64.b64encode(der).decode("ascii")))
    with pytest.raises(SigningError) as caught:
        read_public_key(path)
    assert str(caught.value) == ("key {}: is not an Ed25519 public key. Fix: use keys made by `medkiosk "
                                 "bundle keygen` (openssl genpkey -algorithm ed25519)".format(path))
