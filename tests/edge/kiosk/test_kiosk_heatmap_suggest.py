"""The kiosk's H key (heatmap over the analysed image) and M after a refusal (straight to the suggested
module), end to end on real exported bundles (ONNX Runtime, CPU) and real image files."""

import os
import shutil

import pytest

from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.kiosk import HEATMAP_MISSING, ModuleSlot
from edge.kiosk.keys import HEATMAP_OFF, HEATMAP_ON
from edge.outputs import NullSink
from edge.sources import open_source
from tests.conftest import SHARED_DATA
from tests.edge.kiosk.kiosk_helpers import AMBER, LAYOUT, has_colour, run_kiosk
from tests.group_bundles import build_group_bundles, build_heatmap_bundle, held_out

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def heatmap_bundle(test_artifacts):
    """The test checkpoint exported with its heatmap, kept in the test artefacts for the Python 3.6 run."""
    folder = os.path.join(test_artifacts.root, "bundle-heatmap")
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        pytest.importorskip("torch", reason="exporting the heatmap bundle needs torch")
        build_heatmap_bundle(test_artifacts.root)
    return load_bundle(folder)


@pytest.fixture(scope="module")
def groups(test_artifacts):
    root = os.path.join(test_artifacts.root, "groups")
    if not all(os.path.isfile(os.path.join(root, m, "manifest.json")) for m in ("xray-test", "shapes-test")):
        pytest.importorskip("torch", reason="building the group bundles needs torch")
        build_group_bundles(test_artifacts.root, SHARED_DATA)
    return {m: load_bundle(os.path.join(root, m)) for m in ("xray-test", "shapes-test")}


def _folder(tmp_path, image):
    folder = tmp_path / "usb"
    folder.mkdir(parents=True)
    shutil.copy(image, str(folder / "image.png"))
    return str(folder) + "/"


def _jet_pixels(frame):
    """Saturated colour-map pixels in the image area (a grey X-ray has none)."""
    area = LAYOUT.image.crop(frame).astype(int)
    return int(((area.max(axis=2) - area.min(axis=2)) > 60).sum())  # alpha 0.45 of a JET colour


def test_h_shows_and_hides_the_heatmap(tmp_path, heatmap_bundle, real_xray):
    """A grey X-ray on the (shapes-trained) heatmap bundle: colour in the picture only while H is on."""
    slot = ModuleSlot(heatmap_bundle.module_id, bundle=heatmap_bundle)
    kiosk, _lines, frames = run_kiosk(tmp_path, open_source(_folder(tmp_path, real_xray)), [slot],
                                      keys="WAIT3,H,WAIT3,H,WAIT2", max_frames=10)
    off, on, off_again = frames[2], frames[5], frames[9]
    if not kiosk.current_result() or kiosk.current_result().uncertain:
        pytest.skip("the heatmap is drawn for confident results only; this one is uncertain")
    area = LAYOUT.image.w * LAYOUT.image.h
    assert _jet_pixels(off) < area // 100 and _jet_pixels(on) > area // 4
    assert _jet_pixels(off_again) < area // 100
    assert kiosk.show_heatmap is False and kiosk.messages.last == HEATMAP_OFF
    assert HEATMAP_ON.startswith("Heatmap:")


def test_h_on_a_bundle_without_a_heatmap_says_so(tmp_path, slot, synth_images):
    kiosk, _lines, _frames = run_kiosk(tmp_path, open_source(_folder(tmp_path, synth_images["circle"][0])),
                                       [slot], keys="WAIT2,H", max_frames=4, sink=NullSink())
    assert kiosk.messages.last == HEATMAP_MISSING and kiosk.show_heatmap is False


def _refused_here_accepted_there(groups, test_artifacts):
    """A held-out shapes image the X-ray module refuses and the shapes module accepts (found, not assumed)."""
    from edge.preprocess import load_image

    with Classifier.open(groups["xray-test"], backend="onnxruntime", precision="fp32") as xray, \
            Classifier.open(groups["shapes-test"], backend="onnxruntime", precision="fp32") as shapes:
        for path in held_out(test_artifacts.root, SHARED_DATA, "shapes-test", 20):
            image = load_image(path)
            if xray.classify(image).out_of_scope and not shapes.classify(image).out_of_scope:
                return path
    pytest.fail("no held-out shapes image is refused by the X-ray module and accepted by the shapes one")


def test_m_after_a_refusal_goes_straight_to_the_suggested_module(tmp_path, groups, slot, test_artifacts):
    image = _refused_here_accepted_there(groups, test_artifacts)
    slots = [ModuleSlot("xray-test", bundle=groups["xray-test"]), slot,  # plain M would go to synth-test
             ModuleSlot("shapes-test", bundle=groups["shapes-test"])]
    kiosk, _lines, frames = run_kiosk(tmp_path, open_source(_folder(tmp_path, image)), slots,
                                      keys="WAIT3,M,WAIT3", max_frames=8)
    assert has_colour(LAYOUT.banner.crop(frames[2]), AMBER, minimum=1000)  # refused: out-of-scope banner
    assert kiosk.slot.module_id == "shapes-test"
    assert kiosk.messages.last == "Module: Shapes test module"
    assert not kiosk.current_result().out_of_scope
    # without a suggestion M steps as before
    kiosk, _lines, _frames = run_kiosk(tmp_path / "again", open_source(_folder(tmp_path / "again", image)),
                                       [slots[1], slots[0], slots[2]], keys="WAIT3,M", max_frames=5,
                                       sink=NullSink())
    assert kiosk.slot.module_id == "xray-test"
