"""Developer mode on screen: the trust in use allows unsigned bundles, or a loaded bundle is not
properly signed -> DEVELOPER_BANNER in the image area's alert band on every screen, once in the journal."""

import io
import os
import shutil

from edge.bundle import load_bundle
from edge.kiosk import ModuleSlot
from edge.signing import DEVELOPER_BANNER, Trust, default_trust
from edge.sources import open_source
from tests.edge.kiosk.kiosk_helpers import AMBER, LAYOUT, has_colour, run_kiosk

FRAMES = 4


def _run(tmp_path, folder, slot, trust):
    stderr = io.StringIO()
    kiosk, _lines, frames = run_kiosk(tmp_path, open_source(str(folder) + "/"), [slot], max_frames=FRAMES,
                                      stderr=stderr, trust=trust)
    journal = [line for line in stderr.getvalue().splitlines() if DEVELOPER_BANNER in line]
    banners = [has_colour(LAYOUT.alert.crop(frame), AMBER, minimum=500) for frame in frames]
    return kiosk, journal, banners


def test_developer_mode_is_shown_on_every_screen_and_journalled_once(tmp_path, slot, two_class_folder):
    kiosk, journal, banners = _run(tmp_path, two_class_folder, slot, Trust([], developer_mode=True))
    assert kiosk.developer_notice == DEVELOPER_BANNER
    assert journal == ["medkiosk: " + DEVELOPER_BANNER]
    assert len(banners) == FRAMES and all(banners)


def test_an_unsigned_bundle_shows_the_banner_even_under_the_normal_trust(tmp_path, tiny_bundle,
                                                                       two_class_folder):
    unsigned = str(tmp_path / "unsigned")
    shutil.copytree(tiny_bundle, unsigned)
    os.remove(os.path.join(unsigned, "signature.json"))
    bundle = load_bundle(unsigned, trust=Trust([], developer_mode=True))  # loaded in developer mode
    assert bundle.signature_problem
    trust = default_trust()
    assert not trust.developer_mode
    kiosk, journal, banners = _run(tmp_path, two_class_folder, ModuleSlot("synth-test", bundle=bundle), trust)
    assert len(journal) == 1 and all(banners)


def test_a_signed_bundle_under_the_normal_trust_shows_no_banner(tmp_path, slot, two_class_folder):
    assert not slot.bundle.signature_problem
    kiosk, journal, banners = _run(tmp_path, two_class_folder, slot, default_trust())
    assert kiosk.developer_notice is None and journal == [] and banners and not any(banners)
