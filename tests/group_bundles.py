"""Two real bundles with input checks fitted on two groups of images: real X-rays (NIH) and shapes.

The X-ray module's check refuses most shapes images, which the shapes module's check accepts: the
suggestion case. The other way does not separate on this small backbone (trained on shapes at
64x64, its shapes check accepts X-rays; adult vs child X-rays do not separate either), so the tests
use it as the "no suggestion" case; the shipped chest bundles' checks are measured on their own.

Both come from the test bundle's own checkpoint (EfficientNet-Lite0, 64x64) through the real exporter;
each gets a Mahalanobis input-check head (training.ood) fitted on its group's embeddings, threshold at
its fit images' 99th percentile. Used by the cross-module suggestion tests (edge.suggest). The head is
fitted on the first FIT images of each sorted folder and its threshold set on the next CALIBRATE;
tests use the images after those (``held_out``).
Also the test checkpoint exported with a heatmap (``build_heatmap_bundle``).
Usage: python tests/group_bundles.py ARTIFACTS_DIR (writes ARTIFACTS_DIR/groups/{xray-test,shapes-test} and
ARTIFACTS_DIR/bundle-heatmap; tests/make_test_bundle.py runs it too)
"""

import glob
import os
import sys

FIT = 60  # images whose embeddings the head is fitted on
CALIBRATE = 40  # the next ones: their 99th percentile distance is the threshold
GROUPS = {  # module id -> (title, image glob: {shared} ../shared/data, {artifacts} the test artefacts)
    "xray-test": ("X-ray test module", os.path.join("{shared}", "chest-nih", "images", "*.png")),
    "shapes-test": ("Shapes test module", os.path.join("{artifacts}", "data", "*", "*.png")),
}


SHAPES = ("circle", "square", "stripes", "triangle")


def group_images(artifacts_dir, shared_data, module_id):
    pattern = GROUPS[module_id][1].format(shared=shared_data, artifacts=artifacts_dir)
    paths = sorted(glob.glob(pattern))
    return paths[::2] + paths[1::2] if "{artifacts}" in GROUPS[module_id][1] else paths


def _label(path):
    """Class index of a shapes image (its folder), 0 for an X-ray: one Mahalanobis mean per shape."""
    name = os.path.basename(os.path.dirname(path))
    return SHAPES.index(name) if name in SHAPES else 0


def held_out(artifacts_dir, shared_data, module_id, count):
    """``count`` images of the group that neither fitted nor calibrated its head."""
    return group_images(artifacts_dir, shared_data, module_id)[FIT + CALIBRATE:FIT + CALIBRATE + count]


def _embeddings(net, spec, paths):
    import numpy as np
    import torch

    from edge.preprocess import load_image, preprocess

    batch = np.concatenate([preprocess(load_image(p), spec) for p in paths])
    with torch.no_grad():
        return net.features(torch.from_numpy(batch))


def build_group_bundles(artifacts_dir, shared_data):
    """{module id: bundle folder} under ``artifacts_dir``/groups (built once, then reused)."""
    import numpy as np
    import torch

    from export.onnx_export import export_bundle
    from tests.make_test_bundle import test_signing_key
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.ood import InputCheckHead, choose_threshold, fit_mahalanobis, input_check_entry

    root = os.path.join(artifacts_dir, "groups")
    checkpoint = os.path.join(artifacts_dir, "run", "best.pt")
    key, _trusted = test_signing_key(artifacts_dir)
    out = {}
    for module_id, (title, _pattern) in sorted(GROUPS.items()):
        folder = os.path.join(root, module_id)
        out[module_id] = folder
        if os.path.isfile(os.path.join(folder, "manifest.json")):
            continue
        loaded = load_checkpoint(checkpoint)
        net = loaded.net.eval()
        spec = loaded.description.input
        paths = group_images(artifacts_dir, shared_data, module_id)
        embeddings = _embeddings(net, spec, paths[:FIT])
        labels = np.array([_label(p) for p in paths], dtype=np.int64)
        fit = fit_mahalanobis(embeddings.numpy(), labels[:FIT], int(labels.max()) + 1, components=16)
        with torch.no_grad():
            distances = InputCheckHead(fit, 1.0).distance(_embeddings(net, spec, paths[FIT:FIT + CALIBRATE]))
        head = InputCheckHead(fit, distance_threshold=choose_threshold(distances.numpy(), 0.99))
        data = dict(loaded.data)
        data["description"] = loaded.description.replace(
            input_check=input_check_entry(head, 0.99, message="Not a {} image".format(title))).to_dict()
        data["ood_head"] = head.state()
        data["module_id"], data["title"] = module_id, title
        path = save_checkpoint(os.path.join(root, module_id + ".pt"), data)
        export_bundle(path, folder, module_id=module_id, title=title, key=key, sample_images=paths[:8])
    return out


def build_heatmap_bundle(artifacts_dir):
    """The test checkpoint exported with its heatmap (``--heatmap``) at ARTIFACTS_DIR/bundle-heatmap."""
    folder = os.path.join(artifacts_dir, "bundle-heatmap")
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        from export.onnx_export import export_bundle
        from tests.make_test_bundle import test_signing_key

        export_bundle(os.path.join(artifacts_dir, "run", "best.pt"), folder, module_id="synth-heatmap",
                      title="Synthetic with heatmap", heatmap=True, key=test_signing_key(artifacts_dir)[0])
    return folder


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    artifacts = os.path.abspath(sys.argv[1])
    shared = os.path.join(os.path.dirname(os.path.dirname(here)), "shared", "data")
    print(build_group_bundles(artifacts, shared), build_heatmap_bundle(artifacts))
