"""Signed bundles: keys, signatures, and the tampering drills refused by every loader.

Real Ed25519 keys and signatures (PyCA cryptography), the real shipped chest bundle (signed with the
maintainer's key in config/trusted_keys) and real subprocesses for `bundle verify` and `selftest`.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from edge.bundle import load_bundle, sha256_file, write_json_atomic
from edge.errors import BundleError
from edge.signing import (
    SIGNATURE_FILE,
    SIGNING_KEY_ENV,
    SigningError,
    Trust,
    check_signature,
    keygen,
    read_public_key,
    sign_bundle,
    standard_key_dirs,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHEST = os.path.join(ROOT, "models", "chest")
PEDIATRIC = os.path.join(ROOT, "models", "pediatric-pneumonia")


def _edit(path, change):
    manifest_path = os.path.join(path, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    change(manifest)
    write_json_atomic(manifest_path, manifest)


def _substitute_model(path):
    """The drill: another model in place, its sha256 updated in the manifest, golden/ deleted."""
    shutil.copyfile(os.path.join(PEDIATRIC, "model.onnx"), os.path.join(path, "model.onnx"))
    _edit(path, lambda m: m.update(model_sha256=sha256_file(os.path.join(path, "model.onnx"))))
    shutil.rmtree(os.path.join(path, "golden"))


DRILLS = {
    "swapped-names": lambda p: _edit(p, lambda m: m["model"]["display_names"].reverse()),
    "no-input-check": lambda p: _edit(p, lambda m: m["model"].update(input_check=None)),
    "abstain-zero": lambda p: _edit(p, lambda m: m["model"].update(abstain_threshold=0.0)),
    "substitute": _substitute_model,
}


@pytest.fixture(scope="module")
def drills(tmp_path_factory):
    """{drill name: a tampered copy of the shipped chest bundle}, all in one models folder."""
    models = tmp_path_factory.mktemp("drills")
    copies = {}
    for name, tamper in sorted(DRILLS.items()):
        target = str(models / name)
        shutil.copytree(CHEST, target)
        tamper(target)
        copies[name] = target
    return str(models), copies


def _cli(*args, **env_extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **env_extra)
    env.pop("DISPLAY", None)
    process = subprocess.Popen([sys.executable, "-m", "edge"] + list(args), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_shipped_bundles_are_signed_by_the_maintainer():
    trust = Trust(standard_key_dirs("/nonexistent"))
    for bundle in (CHEST, PEDIATRIC):
        assert check_signature(bundle, trust)[0] in trust.keys
        assert load_bundle(bundle, trust=trust).signature_problem is None


@pytest.mark.parametrize("name", sorted(DRILLS))
def test_each_drill_is_refused_by_the_loader(drills, name):
    with pytest.raises(BundleError) as info:
        load_bundle(drills[1][name])
    if name == "substitute":  # golden/ deleted: refused before the signature is even read
        assert info.value.field == "golden/expected.json" and "missing" in info.value.problem
    else:
        assert info.value.field == "manifest.json" and "differs from the signed file" in info.value.problem
    # Golden images put back: the substitute model is still refused, by its signature.
    if name == "substitute":
        shutil.copytree(os.path.join(CHEST, "golden"), os.path.join(drills[1][name], "golden"))
        try:
            with pytest.raises(BundleError, match="differs from the signed file"):
                load_bundle(drills[1][name])
        finally:
            shutil.rmtree(os.path.join(drills[1][name], "golden"))


def test_drills_are_refused_by_bundle_verify(drills):
    code, out, err = _cli("bundle", "verify", *sorted(drills[1].values()), "--backend", "onnxruntime",
                          "--precision", "fp32")
    assert code == 1 and "Traceback" not in err
    assert "0 of 4 bundles passed" in out, out
    assert out.count("(edited after signing)") == 3
    assert "golden/expected.json: missing: without golden images" in out


def test_drills_are_refused_by_selftest_and_the_kiosk_loader(drills, tmp_path):
    from edge.kiosk import discover_modules

    config = str(tmp_path / "medkiosk.conf")
    with open(config, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = chest\noptional_modules =\nbackend = onnxruntime\n"
                     "precision = fp32\n".format(drills[0]))
    code, out, err = _cli("selftest", "--config", config, "--no-camera", "--no-display")
    assert code == 1 and "Traceback" not in err
    for name in DRILLS:
        assert "[FAIL] {}: signature, manifest".format(name) in out, out
    assert "[FAIL] module chest: configured but no working bundle" in out
    slots, _start = discover_modules(drills[0], ["chest"])
    assert slots[0].bundle is None and "edited after signing" in slots[0].problem


@pytest.mark.onnxruntime
def test_developer_mode_loads_unsigned_bundles_and_says_so(drills, tmp_path):
    models = str(tmp_path / "models")
    shutil.copytree(drills[1]["swapped-names"], os.path.join(models, "chest"))
    config = str(tmp_path / "medkiosk.conf")
    with open(config, "w") as handle:
        handle.write("[kiosk]\nmodels_dir = {}\nmodules = chest\nbackend = onnxruntime\nprecision = fp32\n"
                     "[security]\ndeveloper_mode = yes\n".format(models))
    code, out, err = _cli("selftest", "--config", config, "--no-camera", "--no-display")
    assert code == 0, out + err
    assert "[WARN] trusted keys: DEVELOPER MODE" in out
    assert "[WARN] chest: signature: DEVELOPER MODE" in out
    assert out.splitlines()[-1] == "RESULT: PASS - DEVELOPER MODE: unsigned bundles allowed"
    bundle = load_bundle(os.path.join(models, "chest"),
                         trust=Trust(standard_key_dirs("/nonexistent"), developer_mode=True))
    assert bundle.signer is None and "edited after signing" in bundle.signature_problem


def test_unsigned_untrusted_added_and_forged_are_refused(tiny_bundle, tmp_path):
    target = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, target)
    trust = Trust(standard_key_dirs("/nonexistent"))
    assert load_bundle(target, trust=trust).signer in trust.keys
    with open(os.path.join(target, "golden", "extra.png"), "wb") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match="not signed \\(added after signing\\)"):
        load_bundle(target, trust=trust)
    os.remove(os.path.join(target, "golden", "extra.png"))
    # Forged: the file list updated to match an edited manifest, the signature left as it was.
    _edit(target, lambda m: m["module"].update(title="Forged"))
    with open(os.path.join(target, SIGNATURE_FILE)) as handle:
        signature = json.load(handle)
    signature["files"]["manifest.json"] = sha256_file(os.path.join(target, "manifest.json"))
    write_json_atomic(os.path.join(target, SIGNATURE_FILE), signature)
    with pytest.raises(BundleError, match="signature does not match its file list"):
        load_bundle(target, trust=trust)
    # Signed, correctly, by a key this unit does not trust.
    stranger = str(tmp_path / "stranger.key")
    keygen(stranger, stranger + ".pub")
    sign_bundle(target, stranger)
    with pytest.raises(BundleError, match="which this unit does not trust"):
        load_bundle(target, trust=trust)
    assert load_bundle(target, trust=Trust([str(tmp_path)])).title == "Forged"  # trusted explicitly
    os.remove(os.path.join(target, SIGNATURE_FILE))
    with pytest.raises(BundleError, match="missing: the bundle is not signed"):
        load_bundle(target, trust=trust)


def test_a_symbolic_link_in_a_bundle_is_refused(tiny_bundle, tmp_path):
    target = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, target)
    os.symlink("/etc/hostname", os.path.join(target, "golden", "link.png"))
    with pytest.raises(BundleError, match="is a symbolic link"):
        load_bundle(target)


def test_keygen_and_sign_cli(tiny_bundle, tmp_path):
    key = str(tmp_path / "maintainer.key")
    code, out, err = _cli("bundle", "keygen", "--out", key)
    assert code == 0, err
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and os.path.isfile(key + ".pub")
    code, out, err = _cli("bundle", "keygen", "--out", key)
    assert code == 2 and "already exists" in err and "Traceback" not in err
    target = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, target)
    code, out, err = _cli("bundle", "sign", target, "--key", key)
    assert code == 0 and out.startswith("signed {}: ".format(target)), err
    assert load_bundle(target, trust=Trust([str(tmp_path)])).signer == out.split()[-1]
    code, out, err = _cli("bundle", "sign", target, "--key", str(tmp_path / "missing.key"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_keys_that_are_not_ed25519_are_refused(tiny_bundle, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "rsa.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "rsa.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    trust = Trust([str(tmp_path)])
    assert trust.keys == {} and "is not an Ed25519 public key" in trust.problems[0]
    with pytest.raises(SigningError, match="is not an Ed25519 public key"):
        read_public_key(str(tmp_path / "rsa.pub"))
    target = str(tmp_path / "b")
    shutil.copytree(tiny_bundle, target)
    with pytest.raises(SigningError, match="is not an Ed25519 key"):
        sign_bundle(target, str(tmp_path / "rsa.key"))
    (tmp_path / "garbage.key").write_text("not a key")
    with pytest.raises(SigningError, match="not a readable, unencrypted PEM private key"):
        sign_bundle(target, str(tmp_path / "garbage.key"))


def test_session_signing_key_is_a_test_key():
    assert "test" in os.path.basename(os.environ[SIGNING_KEY_ENV])
