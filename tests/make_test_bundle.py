"""Build the small real bundle the tests use: synthetic images -> short training -> ONNX bundle.

Run by the main test session (fixture ``tiny_bundle``) and by ``make test-py36`` before the
Python 3.6 edge run, which has no torch and so reuses the bundle built here.
The bundle is signed with a test key (never the maintainer's): $MEDKIOSK_SIGNING_KEY when the test
session set it (tests/conftest.py), else a key pair made in OUT_DIR/keys. Its public key is copied
to OUT_DIR/keys/, the folder the tests trust explicitly.
Usage: python tests/make_test_bundle.py OUT_DIR
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TEST_CLASSES = 4
TEST_IMAGE_SIZE = 64
TEST_ARCH = "efficientnet_lite0"  # offline ImageNet weights: learns the synthetic shapes in 4 short epochs


def test_signing_key(workdir):
    """(private key, trusted-keys folder): the session's test key, else a new pair in ``workdir``/keys."""
    import shutil

    from edge.signing import SIGNING_KEY_ENV, keygen

    keys = os.path.join(workdir, "keys")
    os.makedirs(keys, exist_ok=True)
    key = os.environ.get(SIGNING_KEY_ENV)
    if not key:
        key = os.path.join(keys, "test.key")
        if not os.path.isfile(key):
            keygen(key, os.path.join(keys, "test.pub"))
    elif os.path.isfile(key + ".pub"):
        shutil.copyfile(key + ".pub", os.path.join(keys, "test.pub"))
    return key, keys


def resign(bundle_dir):
    """Sign a bundle a test changed on purpose with the session's test key, as a maintainer would."""
    from edge.signing import SIGNING_KEY_ENV, sign_bundle

    sign_bundle(bundle_dir, os.environ[SIGNING_KEY_ENV])
    return bundle_dir


def build_test_bundle(workdir):
    """Generate data, train briefly and export a signed bundle; return (bundle_dir, data_dir)."""
    from export.onnx_export import export_bundle
    from training.synth import generate_dataset
    from training.train import TrainConfig, train

    data_dir = os.path.join(workdir, "data")
    if not os.path.isdir(data_dir):
        generate_dataset(data_dir, num_classes=TEST_CLASSES, per_class=40, size=96, seed=0)
    run_dir = os.path.join(workdir, "run")
    result = train(TrainConfig(data=data_dir, arch=TEST_ARCH, epochs=4, out=run_dir,
                               image_size=TEST_IMAGE_SIZE, batch_size=8, lr=3e-3, seed=0, pretrained=True,
                               abstain_coverage=1.0,
                               workers=0, progress=False))
    bundle_dir = os.path.join(workdir, "bundle")
    key, _trusted = test_signing_key(workdir)
    export_bundle(result.best_checkpoint, bundle_dir, module_id="synth-test", title="Synthetic test module",
                  key=key)
    return bundle_dir, data_dir


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "test-bundle"))
    os.makedirs(out, exist_ok=True)
    bundle, _data = build_test_bundle(out)
    print(bundle)
    # The cross-module and heatmap tests' bundles (tests/group_bundles.py), for the Python 3.6 run too.
    from tests.group_bundles import build_group_bundles, build_heatmap_bundle

    shared = os.path.join(os.path.dirname(ROOT), "shared", "data")
    if os.path.isdir(os.path.join(shared, "chest-nih")):
        print(build_group_bundles(out, shared))
    print(build_heatmap_bundle(out))
