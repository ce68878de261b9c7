"""jetson_setup.sh, run for real as a subprocess against fake roots (ROOT=... prefix).

What cannot exist here is faked and said so: the Jetson is a fake root with a real-format
/etc/nv_tegra_release (R32.7.4 = JetPack 4.6.4, R36.4.3 = JetPack 6.2) and /etc/nvpmodel.conf
lines; hardware steps (apt, useradd, pip, nvpmodel, engines, selftest) are only checked as a
--dry-run plan. The file steps run for real into the fake root, twice, to check idempotency.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "jetson_setup.sh")
FILE_STEPS = "dirs,models,config,units,display,usb,journald"
RELEASES = {
    "jp4": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, "
           "DATE: Fri Jun  9 04:25:08 UTC 2023\n",
    "jp6": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
           "DATE: Wed Jan  8 01:49:37 UTC 2025\n",
    "jp5": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
           "DATE: Tue Aug  1 19:57:35 UTC 2023\n",
}
# The mode lines as nvpmodel.conf writes them (Nano: MAXN is 0; Orin Nano on 6.2: MAXN_SUPER is 2).
NVPMODEL = {
    "jp4": "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=5W >\n",
    "jp6": "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n"
           "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n",
}
needs_systemctl = pytest.mark.skipif(shutil.which("systemctl") is None,
                                     reason="systemctl not installed (apt-get install -y systemd)")


def make_root(tmp_path, platform, name="root"):
    root = tmp_path / name
    (root / "etc").mkdir(parents=True)
    if platform in RELEASES:
        (root / "etc" / "nv_tegra_release").write_text(RELEASES[platform])
    if platform in NVPMODEL:
        (root / "etc" / "nvpmodel.conf").write_text(NVPMODEL[platform])
    return root


@pytest.fixture
def models(tmp_path):
    """Two bundle folders as the script sees them: a folder with manifest.json is a bundle."""
    src = tmp_path / "models"
    for name in ("chest", "skin"):
        (src / name / "golden").mkdir(parents=True)
        (src / name / "manifest.json").write_text(json.dumps({"module_id": name}) + "\n")
        (src / name / "model.onnx").write_bytes(os.urandom(2048))
        (src / name / "golden" / "expected.json").write_text('{"samples": []}\n')
    (src / "README.txt").write_text("not a bundle\n")
    (src / "notes").mkdir()
    return src


def setup(root, *args, **env):
    full_env = dict(os.environ, ROOT=str(root))
    full_env.update(env)
    return subprocess.run(["bash", SCRIPT] + [str(a) for a in args], env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)


def snapshot(root, skip=("var/log/medkiosk-setup.log",)):
    """path -> (kind, mode, content hash or link target, mtime_ns) for everything under root."""
    tree = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, str(root))
            if rel in skip:
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                tree[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                tree[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                tree[rel] = ("file", stat.S_IMODE(info.st_mode), digest, info.st_mtime_ns)
    return tree


def test_bash_syntax():
    result = subprocess.run(["bash", "-n", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (apt-get install -y shellcheck)")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", "--severity=style", SCRIPT,
                             os.path.join(REPO, "systemd", "medkiosk-display")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("platform,expect", [
    ("jp4", {"name": "JetPack 4.6", "release": "L4T R32.7.4", "cuda_pkg": "nvidia-cuda",
             "pins": ["pycuda==2022.1", "pip==21.3.1", "setuptools==59.6.0", "pytools==2022.1.12",
                      "dataclasses==0.8"],
             "mode": "nvpmodel -m 0"}),
    ("jp6", {"name": "JetPack 6", "release": "L4T R36.4.3", "cuda_pkg": "nvidia-cuda-dev",
             "pins": ["pycuda==2024.1.2", "pip==24.0", "pytools==2024.1.21"],
             "mode": "nvpmodel -m 2"}),
])
def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, models, platform, expect):
    root = make_root(tmp_path, platform)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    before = snapshot(root)
    result = setup(root, "--dry-run", "--models", models, "--wheelhouse", wheelhouse, "--jetson-clocks")
    out = result.stdout
    assert snapshot(root) == before, "a dry run wrote into the root"
    assert expect["name"] in out and expect["release"] in out
    plan = [line.strip()[len("[dry-run] "):] for line in out.splitlines()
            if line.strip().startswith("[dry-run]")]
    joined = "\n".join(plan)
    # JetPack's own TensorRT, OpenCV (GStreamer) and numpy from apt; never pip's opencv.
    apt = [line for line in plan if "apt-get install" in line]
    assert len(apt) == 1
    for package in ("python3-libnvinfer", "libopencv-python", "python3-numpy", "python3-venv",
                    expect["cuda_pkg"]):
        assert package in apt[0].split()
    assert "opencv-python" not in " ".join(line for line in plan if "pip install" in line)
    assert "useradd --system" in joined and "--shell /usr/sbin/nologin" in joined
    assert "-m venv --system-site-packages {}/opt/medkiosk/venv".format(root) in joined
    pip_lines = [line for line in plan if "pip install" in line]
    assert all("--no-index" in line for line in pip_lines), pip_lines
    for pin in expect["pins"]:
        assert pin in joined, pin
    assert "--no-build-isolation" in joined
    assert "install -d -m 0700 {}/var/lib/medkiosk".format(root) in joined
    assert "cp -R {}/chest/ {}/opt/medkiosk/models/.chest.new".format(models, root) in joined
    assert "README" not in joined and "notes" not in joined
    assert "systemctl --root={} enable medkiosk.service".format(root) in joined
    assert "systemctl --root={} enable medkiosk-clocks.service".format(root) in joined
    assert expect["mode"] in joined
    assert ("medkiosk export engines --models /opt/medkiosk/models --cache /var/lib/medkiosk/engines "
            "--precision fp16") in joined
    assert "medkiosk selftest --config /etc/medkiosk/medkiosk.conf" in joined
    # The empty wheelhouse is reported with the exact missing pins, and the dry run says it
    # would not get through (exit 1) instead of pretending all is well.
    assert "PROBLEM: wheelhouse {} lacks: ".format(wheelhouse) in out
    assert "PROBLEM: no medkiosk-*.whl" in out
    assert result.returncode == 1
    assert "problem(s) to fix first. Nothing was changed." in out


def test_wheelhouse_check_matches_pip_names(tmp_path, models):
    """Names only matter to this check (pip does the real install on the device): files named the
    way pip names them satisfy it, case and -/_ differences included; a wrong version does not."""
    root = make_root(tmp_path, "jp4")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for name in ("pip-21.3.1-py3-none-any.whl", "setuptools-59.6.0-py3-none-any.whl",
                 "wheel-0.37.1-py2.py3-none-any.whl", "pycuda-2022.1.tar.gz", "pytools-2022.1.12.tar.gz",
                 "platformdirs-2.4.0-py3-none-any.whl", "typing_extensions-4.1.1-py3-none-any.whl",
                 "dataclasses-0.8-py3-none-any.whl", "appdirs-1.4.4-py2.py3-none-any.whl",
                 "mako-1.1.6-py2.py3-none-any.whl",
                 "MarkupSafe-2.0.0-cp36-cp36m-manylinux2014_aarch64.whl",
                 "cryptography-40.0.2-cp36-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                 "cffi-1.15.1-cp36-cp36m-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                 "pycparser-2.21-py2.py3-none-any.whl", "pydicom-2.3.1-py3-none-any.whl",
                 "segno-1.6.6-py3-none-any.whl", "medkiosk-0.1.0-py3-none-any.whl"):
        (wheelhouse / name).write_bytes(b"")
    out = setup(root, "--dry-run", "--models", models, "--wheelhouse", wheelhouse).stdout
    problems = [line for line in out.splitlines() if "PROBLEM" in line]
    assert problems == ["  [dry-run] PROBLEM: wheelhouse {} lacks: MarkupSafe==2.0.1".format(wheelhouse)]
    assert "pip install --no-index --no-deps --force-reinstall {}/medkiosk-0.1.0-py3-none-any.whl".format(
        wheelhouse) in out


DPKG_STATUS = """Package: nvidia-l4t-core
Status: install ok installed
Priority: standard
Section: misc
Maintainer: NVIDIA Corporation
Architecture: arm64
Version: 36.4.3-20250107174145
Description: NVIDIA Core Package

Package: python3-libnvinfer
Status: install ok installed
Priority: optional
Section: libs
Maintainer: NVIDIA Corporation
Architecture: arm64
Version: 10.3.0.30-1+cuda12.5
Description: Python 3 bindings for TensorRT

"""


@pytest.mark.skipif(shutil.which("dpkg-query") is None,
                    reason="dpkg-query not installed (Debian/Ubuntu only)")
def test_platform_from_dpkg_when_the_release_file_is_missing(tmp_path, models):
    """No /etc/nv_tegra_release: the nvidia-l4t-core version in the (fake) dpkg database decides,
    and packages that database lists as installed are not installed again."""
    root = make_root(tmp_path, "none")
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    out = setup(root, "--dry-run", "--models", models).stdout
    assert "L4T R36.4.3" in out and "JetPack 6" in out
    assert "ok: python3-libnvinfer installed" in out
    apt = [line for line in out.splitlines() if "apt-get install" in line]
    assert len(apt) == 1 and "python3-libnvinfer" not in apt[0] and "libopencv-python" in apt[0]


@pytest.mark.parametrize("platform", ["none", "jp5"])
def test_refuses_other_machines(tmp_path, models, platform):
    root = make_root(tmp_path, platform)
    before = snapshot(root)
    result = setup(root, "--dry-run", "--models", models)
    assert result.returncode == 1
    assert "not a supported Jetson" in result.stdout
    assert "--force --target" in result.stdout
    assert "== packages" not in result.stdout
    assert snapshot(root) == before


def test_force_follows_the_chosen_path(tmp_path, models):
    root = make_root(tmp_path, "none")
    result = setup(root, "--dry-run", "--force", "--target", "jp6", "--models", models)
    assert "warning: not a supported Jetson" in result.stdout
    assert "pycuda==2024.1.2" in result.stdout
    assert setup(root, "--dry-run", "--force", "--models", models).returncode == 2


@needs_systemctl
@pytest.mark.parametrize("platform", ["jp4", "jp6"])
def test_file_steps_are_idempotent(tmp_path, models, platform):
    root = make_root(tmp_path, platform)
    first = setup(root, "--steps", FILE_STEPS, "--models", models)
    assert first.returncode == 0, first.stdout
    assert "Done:" in first.stdout
    after_first = snapshot(root)
    second = setup(root, "--steps", FILE_STEPS, "--models", models)
    assert second.returncode == 0, second.stdout
    assert "Nothing changed: this unit was already set up (0 changes)." in second.stdout
    assert "+ " not in second.stdout
    assert snapshot(root) == after_first

    tree = after_first
    assert tree["var/lib/medkiosk"] == ("dir", 0o700)
    assert tree["var/lib/medkiosk/engines"] == ("dir", 0o700)
    assert tree["opt/medkiosk/libexec/medkiosk-display"][1] == 0o755
    for unit in ("medkiosk.service", "medkiosk-engines.service", "medkiosk-display.service"):
        assert tree["etc/systemd/system/graphical.target.wants/" + unit] == (
            "link", "/etc/systemd/system/" + unit)
    assert "etc/systemd/system/graphical.target.wants/medkiosk-clocks.service" not in tree
    with open(os.path.join(REPO, "config", "medkiosk.conf"), "rb") as handle:
        shipped = hashlib.sha256(handle.read()).hexdigest()
    assert tree["etc/medkiosk/medkiosk.conf"][2] == shipped
    assert tree["opt/medkiosk/models/chest/model.onnx"][2] == hashlib.sha256(
        (models / "chest" / "model.onnx").read_bytes()).hexdigest()
    assert not any(path.startswith("opt/medkiosk/models/.") for path in tree)
    journald = (root / "etc/systemd/journald.conf.d/90-medkiosk.conf").read_text()
    assert "Storage=persistent" in journald and "SystemMaxUse=" in journald
    xorg = (root / "etc/X11/xorg.conf.d/90-medkiosk.conf").read_text()
    assert '"BlankTime" "0"' in xorg and '"OffTime" "0"' in xorg and "ServerLayout" not in xorg
    assert os.stat(str(root / "var/log/medkiosk-setup.log")).st_mode & 0o077 == 0
    shipped_keys = sorted(os.listdir(os.path.join(REPO, "config", "trusted_keys")))
    assert shipped_keys and all(tree["etc/medkiosk/trusted_keys/" + key][1] == 0o644 for key in shipped_keys)


@needs_systemctl
def test_edited_config_kept_and_changed_bundle_replaced(tmp_path, models):
    root = make_root(tmp_path, "jp6")
    assert setup(root, "--steps", FILE_STEPS, "--models", models).returncode == 0
    conf = root / "etc/medkiosk/medkiosk.conf"
    conf.write_text(conf.read_text().replace("source = csi://0", "source = v4l2:///dev/video0"))
    (models / "skin" / "model.onnx").write_bytes(b"new weights")
    result = setup(root, "--steps", "config,models", "--models", models)
    assert result.returncode == 0, result.stdout
    assert "kept as edited" in result.stdout
    assert "source = v4l2:///dev/video0" in conf.read_text()
    assert "bundle chest up to date" in result.stdout
    assert "mv {0}/opt/medkiosk/models/.skin.new {0}/opt/medkiosk/models/skin".format(root) in result.stdout
    assert (root / "opt/medkiosk/models/skin/model.onnx").read_bytes() == b"new weights"


@needs_systemctl
def test_desktop_handed_back_on_uninstall(tmp_path, models):
    """A fake root with gdm3 enabled as display-manager.service, like JetPack's desktop image."""
    root = make_root(tmp_path, "jp4")
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "gdm3.service").write_text("[Unit]\nDescription=GNOME Display Manager\n[Service]\n"
                                           "ExecStart=/usr/sbin/gdm3\n[Install]\n"
                                           "Alias=display-manager.service\n")
    subprocess.run(["systemctl", "--root=" + str(root), "enable", "gdm3.service"], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dm_link = root / "etc/systemd/system/display-manager.service"
    assert dm_link.is_symlink()
    pristine = snapshot(root)

    assert setup(root, "--steps", FILE_STEPS, "--models", models).returncode == 0
    assert not dm_link.is_symlink()
    assert "display_manager=gdm3.service" in (root / "etc/medkiosk/setup.state").read_text()
    (root / "var/lib/medkiosk/cases").mkdir()

    plan = setup(root, "--uninstall", "--dry-run")
    assert plan.returncode == 0
    assert "[dry-run] systemctl --root={} enable gdm3.service".format(root) in plan.stdout

    result = setup(root, "--uninstall")
    assert result.returncode == 0, result.stdout
    assert dm_link.is_symlink()
    left = snapshot(root)
    kept = {path for path in left if path.startswith(("var/lib/medkiosk", "var/log"))}
    assert "var/lib/medkiosk/cases" in kept
    # Every file and link is as before the install (empty parent folders such as /opt may stay).
    files = {path: entry for path, entry in left.items() if entry[0] != "dir" and path not in kept}
    assert files == {path: entry for path, entry in pristine.items() if entry[0] != "dir"}
    assert not [path for path in left if "medkiosk" in path and path not in kept]

    purge = setup(root, "--uninstall", "--purge")
    assert purge.returncode == 0, purge.stdout
    assert not (root / "var/lib/medkiosk").exists()


def test_readonly_root_plan(tmp_path):
    """--readonly-root needs /var/lib/medkiosk on its own partition (an fstab entry); with one, the
    plan adds overlayroot, binds the journal next to the cases and swaps L4T's /boot/initrd."""
    root = make_root(tmp_path, "jp4")
    refused = setup(root, "--dry-run", "--steps", "readonly", "--readonly-root")
    assert refused.returncode == 1
    assert "PROBLEM: /var/lib/medkiosk has no /etc/fstab entry" in refused.stdout
    assert "mkfs.ext4 -L MEDKIOSK-DATA" in refused.stdout
    (root / "etc/fstab").write_text("LABEL=MEDKIOSK-DATA /var/lib/medkiosk ext4 defaults,noatime 0 2\n")
    (root / "boot/extlinux").mkdir(parents=True)
    (root / "boot/extlinux/extlinux.conf").write_text(
        "LABEL primary\n  LINUX /boot/Image\n  INITRD /boot/initrd\n")
    before = snapshot(root)
    plan = setup(root, "--dry-run", "--steps", "readonly", "--readonly-root")
    assert plan.returncode == 0, plan.stdout
    assert snapshot(root) == before
    out = plan.stdout
    assert "apt-get install -y --no-install-recommends overlayroot" in out
    assert '| overlayroot="tmpfs:swap=0,recurse=0"' in out
    assert "| /var/lib/medkiosk/journal /var/log/journal none bind" in out
    assert "update-initramfs" in out
    assert "cp -p {0}/boot/initrd {0}/boot/initrd.medkiosk-backup".format(root) in out
    assert "7 action(s) planned" in out


def test_kiosk_user_groups_and_ownership(tmp_path):
    """A fake root whose passwd/group already has the medkiosk user in video but not render."""
    root = make_root(tmp_path, "jp6")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n"
                                     "medkiosk:x:998:997::/var/lib/medkiosk:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:medkiosk\nrender:x:109:\nmedkiosk:x:997:\n")
    plan = setup(root, "--dry-run", "--steps", "user,dirs").stdout
    assert "ok: user medkiosk exists" in plan and "ok: medkiosk in group video" in plan
    assert "[dry-run] usermod -a -G render medkiosk" in plan
    assert "useradd" not in plan
    assert "[dry-run] chown 998:997 {}/var/lib/medkiosk".format(root) in plan
    if os.geteuid() != 0:
        pytest.skip("chown into the fake root needs root; the plan above was checked")
    assert setup(root, "--steps", "dirs").returncode == 0
    info = os.stat(str(root / "var/lib/medkiosk"))
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (998, 997, 0o700)
    assert "(0 changes)" in setup(root, "--steps", "dirs").stdout


def test_hardware_steps_refuse_a_fake_root(tmp_path):
    root = make_root(tmp_path, "jp6")
    result = setup(root, "--steps", "dirs,engines")
    assert result.returncode == 1
    assert "step 'engines' changes the live system" in result.stdout
    assert not (root / "opt").exists()


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--steps", "dirs,nope"], "unknown step 'nope'"),
    (["--target", "jp5"], "--target must be jp4 or jp6"),
    (["--make-wheelhouse", "x"], "--make-wheelhouse needs --target"),
    (["--purge"], "--purge only goes with --uninstall"),
])
def test_usage_errors(tmp_path, args, message):
    result = setup(make_root(tmp_path, "jp6"), *args)
    assert result.returncode == 2
    assert message in result.stdout


def test_help_and_docs_name_every_option():
    result = subprocess.run(["bash", SCRIPT, "--help"], stdout=subprocess.PIPE, text=True)
    assert result.returncode == 0
    with open(SCRIPT) as handle:
        source = handle.read()
    block = source[source.index("parse_args() {"):source.index("setup_log() {")]
    options = sorted({word.split(")")[0] for word in block.split() if word.startswith("--")
                      and word.endswith(")")})
    assert len(options) >= 14, options
    with open(os.path.join(REPO, "docs", "technician.md")) as handle:
        docs = handle.read()
    for option in options:
        assert option in result.stdout, option
        assert option in docs, option


@pytest.mark.parametrize("platform", ["none", "jp5"])
def test_uninstall_refuses_other_machines(tmp_path, platform):
    """--uninstall checks the platform as install does: it never strips another machine."""
    root = make_root(tmp_path, platform)
    (root / "etc/medkiosk").mkdir()
    (root / "etc/medkiosk/medkiosk.conf").write_text("[kiosk]\n")
    before = snapshot(root)
    for args in (["--uninstall"], ["--uninstall", "--dry-run"], ["--uninstall", "--purge"]):
        result = setup(root, *args)
        assert result.returncode == 1, result.stdout
        assert "not a supported Jetson" in result.stdout and "--force --target" in result.stdout
    after = snapshot(root)
    assert {p: e for p, e in after.items() if not p.startswith("var")} == before  # only the setup log
    forced = setup(root, "--uninstall", "--dry-run", "--force", "--target", "jp4")
    assert forced.returncode == 0 and "warning: not a supported Jetson" in forced.stdout


def _signed_models(tmp_path):
    """The shipped, signed bundles as the stick carries them."""
    src = tmp_path / "stick-models"
    for name in ("chest", "pediatric-pneumonia"):
        shutil.copytree(os.path.join(REPO, "models", name), str(src / name))
    return src


def _predicted(out):
    return [line.strip()[len("[dry-run] predicted: "):].strip() for line in out.splitlines()
            if line.strip().startswith("[dry-run] predicted: ")]


def test_dry_run_predicts_a_passing_selftest_with_the_shipped_config(tmp_path):
    root = make_root(tmp_path, "jp4")
    result = setup(root, "--dry-run", "--steps", "selftest", "--models", _signed_models(tmp_path))
    assert result.returncode == 0, result.stdout
    predicted = _predicted(result.stdout)
    assert "[PASS] module chest: installed and verified" in predicted
    assert any(line.startswith("[WARN] module skin: optional, not installed") for line in predicted)
    assert "RESULT: PASS" in predicted
    assert "predicted selftest: PASS" in result.stdout


def test_dry_run_predicts_a_failing_selftest(tmp_path):
    """A unit's config that requires the skin module, and a tampered bundle: both seen before install."""
    root = make_root(tmp_path, "jp6")
    (root / "etc/medkiosk").mkdir()
    with open(os.path.join(REPO, "config", "medkiosk.conf")) as handle:
        shipped = handle.read()
    (root / "etc/medkiosk/medkiosk.conf").write_text(shipped.replace(
        "modules = chest, pediatric-pneumonia", "modules = chest, pediatric-pneumonia, skin").replace(
        "optional_modules = skin", "optional_modules ="))
    models = _signed_models(tmp_path)
    manifest = models / "chest" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"Pneumothorax"', '"Pneumothorax "', 1))
    before = snapshot(root)
    result = setup(root, "--dry-run", "--steps", "selftest", "--models", models)
    assert result.returncode == 3, result.stdout
    predicted = _predicted(result.stdout)
    assert any(line.startswith("[FAIL] chest: signature, manifest") and "differs from the signed file" in line
               for line in predicted), predicted
    assert any(line.startswith("[FAIL] module skin: configured but no working bundle") for line in predicted)
    assert "Predicted: NOT READY - the selftest would fail" in result.stdout
    assert snapshot(root) == before
