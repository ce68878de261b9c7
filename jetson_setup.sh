#!/usr/bin/env bash
# jetson_setup.sh: turn a freshly flashed Jetson into the medkiosk appliance.
#
#   sudo ./jetson_setup.sh [--wheelhouse DIR] [--models DIR] [--jetson-clocks] [--readonly-root]
#   sudo ./jetson_setup.sh --dry-run          # print every action, change nothing
#   sudo ./jetson_setup.sh --uninstall [--purge]
#   ./jetson_setup.sh --make-wheelhouse DIR --target jp4|jp6   # on a PC with internet, for the USB stick
#
# Jetson Nano on JetPack 4.6.x (L4T R32.6/R32.7, Python 3.6) and Orin Nano on JetPack 6
# (L4T R36, Python 3.10). Idempotent: a second run changes nothing. Every step checks whether
# it is already done; every change goes through `run` (honours --dry-run, logs) and every path
# written is prefixed with $ROOT (empty on a device; a fake root in tests/appliance).
# See docs/technician.md for the walk-through and --help for all options.

set -Eeuo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${ROOT:-}"
ROOT="${ROOT%/}"

# Layout on the device (paths without $ROOT).
PREFIX=/opt/medkiosk
VENV="$PREFIX/venv"
LIBEXEC="$PREFIX/libexec"
MODELS_DEST="$PREFIX/models"
CONF_DIR=/etc/medkiosk
CONF_FILE="$CONF_DIR/medkiosk.conf"
TRUSTED_KEYS="$CONF_DIR/trusted_keys"
SETUP_STATE="$CONF_DIR/setup.state"
STATE_DIR=/var/lib/medkiosk
ENGINE_CACHE="$STATE_DIR/engines"
UNIT_DIR=/etc/systemd/system
KIOSK_USER=medkiosk
KIOSK_UNITS=(medkiosk-display.service medkiosk-engines.service medkiosk.service medkiosk-usb-export.socket)
ALL_UNITS=(medkiosk-display.service medkiosk-engines.service medkiosk.service medkiosk-clocks.service medkiosk-serve.service medkiosk-usb-export.socket)
# Started per connection by medkiosk-usb-export.socket (the kiosk's E key); never enabled itself.
TEMPLATE_UNITS=(medkiosk-usb-export@.service)
USB_OUTBOX="$STATE_DIR/usb-outbox"
XORG_SNIPPET=/etc/X11/xorg.conf.d/90-medkiosk.conf
JOURNALD_SNIPPET=/etc/systemd/journald.conf.d/90-medkiosk.conf
USB_RULE=/etc/udev/rules.d/90-medkiosk-usb.rules
OVERLAYROOT_CONF=/etc/overlayroot.conf
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
PYTHON="${PYTHON:-/usr/bin/python3}"
# systemctl --root works offline on a fake root (enable, disable, is-enabled).
if [ -n "$ROOT" ]; then
    SYSTEMCTL=(systemctl "--root=$ROOT")
else
    SYSTEMCTL=(systemctl)
fi

# Steps in order. Hardware-free ones only write files below $ROOT (and run systemctl --root).
ALL_STEPS=(packages user dirs venv verify models config units display usb journald power clocks readonly engines selftest)
FILE_STEPS=(dirs models config units display usb journald)

# Pinned Python packages per JetPack. numpy, OpenCV (GStreamer) and TensorRT come from JetPack
# itself through --system-site-packages; never pip's opencv-python over them.
# JetPack 4.6 = Python 3.6: pycuda 2022.1 is the last release for 3.6 (2022.2 needs ~=3.8), pip
# 21.3.1 and setuptools 59.6.0 are the last for 3.6, pytools 2022.1.12 is the newest 3.6 resolves.
# cryptography checks the model bundles' Ed25519 signatures: 40.0.2 is the last for 3.6 (cp36-abi3
# aarch64 wheels, with cffi 1.15.1); Ubuntu 18.04's python3-cryptography 2.1 predates Ed25519.
# pydicom reads DICOM from the X-ray machine (pure Python): 2.3.1 is the last for 3.6.
# segno draws the LAN pairing QR code on the kiosk screen (pure Python, no dependencies, 3.6+).
# fpdf2 makes the referral sheets the E key exports (pure Python): 2.4.6 is the last for 3.6; its
# one dependency, Pillow, is JetPack's python3-pil (apt).
PINS_JP4=(pip==21.3.1 setuptools==59.6.0 wheel==0.37.1 pycuda==2022.1 pytools==2022.1.12 platformdirs==2.4.0
          typing_extensions==4.1.1 dataclasses==0.8 appdirs==1.4.4 Mako==1.1.6 MarkupSafe==2.0.1
          cryptography==40.0.2 cffi==1.15.1 pycparser==2.21 pydicom==2.3.1 segno==1.6.6 fpdf2==2.4.6)
PINS_JP6=(pip==24.0 setuptools==70.3.0 wheel==0.43.0 pycuda==2024.1.2 pytools==2024.1.21 platformdirs==4.2.2
          typing_extensions==4.12.2 Mako==1.3.5 MarkupSafe==2.1.5 cryptography==40.0.2 cffi==1.15.1
          pycparser==2.21 pydicom==3.0.2 segno==1.6.6 fpdf2==2.4.6)
# Published only as source for the target Python: built on the device against its CUDA.
SDISTS_JP4=(pycuda pytools)
SDISTS_JP6=(pycuda)

# Options.
DRY_RUN=0
UNINSTALL=0
PURGE=0
FORCE=0
TARGET=""
MODELS_SRC="$PROJECT_DIR/models"
WHEELHOUSE=""
JETSON_CLOCKS=0
READONLY_ROOT=0
MAX_POWER=1
STEPS_ARG=""
MAKE_WHEELHOUSE=""
LOG_FILE="${LOG_FILE:-}"

# Run state.
PLATFORM=""
L4T_RELEASE=""
CHANGES=0
STEP="start"
HINT=""
TMP_DIR=""
SELFTEST_OK=1
PREDICTED_FAIL=0
PROBLEMS=0
declare -A SELECTED=()

usage() {
    cat <<'EOF'
Usage: sudo ./jetson_setup.sh [OPTIONS]

Sets up a Jetson (Nano / JetPack 4.6.x or Orin Nano / JetPack 6) as the medkiosk appliance:
JetPack's TensorRT and GStreamer OpenCV, a pinned virtualenv in /opt/medkiosk, the medkiosk user,
config in /etc/medkiosk, state in /var/lib/medkiosk, the systemd units, a bare X kiosk screen,
journald limits, TensorRT engines and a selftest. Running it again changes nothing.

Options:
  --dry-run            print every action without doing it
  --uninstall          remove what this script added (keeps /var/lib/medkiosk: patient cases)
  --purge              with --uninstall: also delete /var/lib/medkiosk and the medkiosk user
  --models DIR         install the model bundles from DIR (default: ./models next to this script)
  --wheelhouse DIR     offline pip packages (pycuda source, pinned deps, the medkiosk wheel),
                       made with --make-wheelhouse (default: ./wheelhouse next to this script)
  --jetson-clocks      also pin clocks at maximum on every boot (medkiosk-clocks.service)
  --no-max-power       leave the nvpmodel power mode as it is (default: the MAXN mode)
  --readonly-root      read-only root file system with a RAM overlay (needs /var/lib/medkiosk
                       on its own writable partition; see docs/technician.md)
  --steps A,B,...      run only these steps: packages user dirs venv verify models config units
                       display usb journald power clocks readonly engines selftest
  --force              run on a machine that is not a supported Jetson (needs --target)
  --target jp4|jp6     the JetPack path to follow with --force or --make-wheelhouse
  --make-wheelhouse DIR  download the pinned packages for --target and build the medkiosk
                       wheel into DIR (on a PC with internet; copy DIR to the USB stick)
  --log FILE           log file (default /var/log/medkiosk-setup.log)
  -h, --help           this help

Exit status: 0 ready, 1 a step failed (the message says what to do), 2 bad usage,
3 installed but the selftest failed (the unit is NOT ready).
EOF
}

# ---------------------------------------------------------------------------------------------
# Output, logging, the run wrapper.

say() {
    printf '%s\n' "$*"
    if [ "$DRY_RUN" -eq 0 ] && [ -n "$LOG_FILE" ] && [ -w "$(dirname "$LOG_FILE")" ]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOG_FILE"
    fi
}

ok() {
    say "  ok: $*"
}

fail() {
    say "FAILED in step '$STEP': $*"
    [ -n "$HINT" ] && say "  What to do: $HINT"
    [ "$DRY_RUN" -eq 0 ] && [ -n "$LOG_FILE" ] && say "  Full log: $LOG_FILE"
    exit 1
}

# problem MESSAGE: a real run stops here (fail); a dry run notes it and goes on, so the whole plan
# and every problem show up in one go.
problem() {
    if [ "$DRY_RUN" -eq 1 ]; then
        PROBLEMS=$((PROBLEMS + 1))
        say "  [dry-run] PROBLEM: $*"
        say "    What to do: $HINT"
        return 0
    fi
    fail "$@"
}

usage_error() {
    printf 'jetson_setup.sh: %s (see --help)\n' "$*" >&2
    exit 2
}

on_error() {
    local status=$1 line=$2
    fail "unexpected error (exit $status at line $line of jetson_setup.sh)"
}

quote() {
    local out="" arg
    for arg in "$@"; do
        out+="$(printf '%q' "$arg") "
    done
    printf '%s' "${out% }"
}

# run CMD...: the only way this script changes the system. Counts a change, logs the command and
# its output, prints instead of running under --dry-run, stops with the step's hint on failure.
run() {
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" -eq 1 ]; then
        say "  [dry-run] $(quote "$@")"
        return 0
    fi
    say "  + $(quote "$@")"
    local status=0
    if [ -n "$LOG_FILE" ]; then
        "$@" 2>&1 | tee -a "$LOG_FILE" || status=${PIPESTATUS[0]}
    else
        "$@" || status=$?
    fi
    [ "$status" -eq 0 ] || fail "command failed (exit $status): $(quote "$@")"
}

begin_step() {
    STEP=$1
    HINT=$2
    say ""
    say "== $STEP"
}

selected() {
    [ -n "${SELECTED[$1]:-}" ]
}

# ---------------------------------------------------------------------------------------------
# Idempotent file-system helpers (paths are device paths; $ROOT is added here).

user_exists() {
    if [ -n "$ROOT" ]; then
        [ -f "$ROOT/etc/passwd" ] && grep -q "^$1:" "$ROOT/etc/passwd"
    else
        getent passwd "$1" >/dev/null
    fi
}

group_exists() {
    if [ -n "$ROOT" ]; then
        [ -f "$ROOT/etc/group" ] && grep -q "^$1:" "$ROOT/etc/group"
    else
        getent group "$1" >/dev/null
    fi
}

# numeric_owner USER:GROUP -> UID:GID
numeric_owner() {
    local user=${1%%:*} group=${1##*:} uid gid
    if [ -n "$ROOT" ]; then
        uid="$(awk -F: -v name="$user" '$1 == name { print $3 }' "$ROOT/etc/passwd")"
        gid="$(awk -F: -v name="$group" '$1 == name { print $3 }' "$ROOT/etc/group" 2>/dev/null)"
    else
        uid="$(id -u "$user")"
        gid="$(getent group "$group" | cut -d: -f3)"
    fi
    printf '%s:%s' "$uid" "$gid"
}

in_group() {
    if [ -n "$ROOT" ]; then
        awk -F: -v user="$1" -v group="$2" \
            '$1 == group { n = split($4, members, ","); for (i = 1; i <= n; i++) if (members[i] == user) found = 1 }
             END { exit !found }' "$ROOT/etc/group" 2>/dev/null
    else
        id -nG "$1" | tr ' ' '\n' | grep -qx "$2"
    fi
}

# ensure_dir PATH MODE [OWNER:GROUP]: ownership is set only where that user exists (a fake root
# in tests has no medkiosk user; the device has one after the user step).
ensure_dir() {
    local path=$1 mode=$2 owner=${3:-} target="$ROOT$1"
    local before=$CHANGES
    if [ ! -d "$target" ]; then
        run install -d -m "$mode" "$target"
    elif [ "$(stat -c '%a' "$target")" != "${mode#0}" ]; then
        run chmod "$mode" "$target"
    fi
    if [ -n "$owner" ] && user_exists "${owner%%:*}"; then
        # Numeric ids from the (fake) root's own passwd/group, not this machine's names.
        local ids
        ids="$(numeric_owner "$owner")"
        if [ ! -d "$target" ] || [ "$(stat -c '%u:%g' "$target")" != "$ids" ]; then
            run chown "$ids" "$target"
        fi
    fi
    [ "$CHANGES" -gt "$before" ] || ok "directory $path ($mode${owner:+ $owner})"
}

# install_file SRC DEST MODE: copy when missing or different (content or mode).
install_file() {
    local src=$1 dest=$2 mode=$3 target="$ROOT$2"
    [ -f "$src" ] || fail "missing file $src in the project folder"
    if [ -f "$target" ] && cmp -s "$src" "$target" && [ "$(stat -c '%a' "$target")" = "${mode#0}" ]; then
        ok "$dest up to date"
        return 0
    fi
    run install -D -m "$mode" "$src" "$target"
}

# install_text DEST MODE <<<content; a dry run also shows the content it would write.
install_text() {
    local dest=$1 mode=$2 tmp before=$CHANGES
    tmp="$(mktemp "$TMP_DIR/text.XXXXXX")"
    cat >"$tmp"
    install_file "$tmp" "$dest" "$mode"
    if [ "$DRY_RUN" -eq 1 ] && [ "$CHANGES" -gt "$before" ]; then
        sed 's/^/    | /' "$tmp"
    fi
}

remove_path() {
    if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
        run rm -rf "$ROOT$1"
    else
        ok "$1 already absent"
    fi
}

state_get() {
    local key=$1
    [ -f "$ROOT$SETUP_STATE" ] || return 0
    sed -n "s/^$key=\\([A-Za-z0-9@._-]*\\)\$/\\1/p" "$ROOT$SETUP_STATE" | tail -n 1
}

state_set() {
    local key=$1 value=$2
    [ "$(state_get "$key")" = "$value" ] && return 0
    local tmp
    tmp="$(mktemp "$TMP_DIR/state.XXXXXX")"
    if [ -f "$ROOT$SETUP_STATE" ]; then
        grep -v "^$key=" "$ROOT$SETUP_STATE" >"$tmp" || true
    fi
    printf '%s=%s\n' "$key" "$value" >>"$tmp"
    install_file "$tmp" "$SETUP_STATE" 0644
}

# ---------------------------------------------------------------------------------------------
# Platform.

detect_platform() {
    local release_file="$ROOT/etc/nv_tegra_release" major="" revision="" line version
    if [ -r "$release_file" ]; then
        line="$(head -n 1 "$release_file")"
        if [[ $line =~ R([0-9]+)[[:space:]]+\(release\),[[:space:]]+REVISION:[[:space:]]+([0-9.]+) ]]; then
            major=${BASH_REMATCH[1]}
            revision=${BASH_REMATCH[2]}
        fi
    fi
    if [ -z "$major" ] && command -v dpkg-query >/dev/null; then
        version="$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' nvidia-l4t-core 2>/dev/null || true)"
        if [[ $version =~ ^([0-9]+)\.([0-9]+(\.[0-9]+)?) ]]; then
            major=${BASH_REMATCH[1]}
            revision=${BASH_REMATCH[2]}
        fi
    fi
    L4T_RELEASE="${major:+R$major.$revision}"
    case "$major" in
        32)
            PLATFORM=jp4
            if [[ ! $revision =~ ^(6|7)\. ]]; then
                say "  warning: L4T $L4T_RELEASE is older than JetPack 4.6 (R32.6/R32.7); upgrade if anything fails"
            fi
            ;;
        36) PLATFORM=jp6 ;;
        *)
            local what="${L4T_RELEASE:-no /etc/nv_tegra_release and no nvidia-l4t-core package}"
            if [ "$FORCE" -eq 0 ]; then
                HINT="run this on a Jetson Nano with JetPack 4.6.x or an Orin Nano with JetPack 6; to try anyway: --force --target jp4|jp6"
                fail "not a supported Jetson ($what)"
            fi
            [ -n "$TARGET" ] || usage_error "--force needs --target jp4 or jp6"
            PLATFORM=$TARGET
            say "  warning: not a supported Jetson ($what); --force: following the $PLATFORM path"
            ;;
    esac
    if [ -n "$TARGET" ] && [ "$TARGET" != "$PLATFORM" ]; then
        usage_error "--target $TARGET does not match this device ($PLATFORM, L4T $L4T_RELEASE)"
    fi
}

platform_name() {
    case "$PLATFORM" in
        jp4) printf 'JetPack 4.6 (L4T R32, Python 3.6, TensorRT 8.2, CUDA 10.2)' ;;
        jp6) printf 'JetPack 6 (L4T R36, Python 3.10, TensorRT 8.6/10, CUDA 12)' ;;
    esac
}

expected_python() {
    case "$PLATFORM" in
        jp4) printf '3.6' ;;
        jp6) printf '3.10' ;;
    esac
}

pins() {
    case "$PLATFORM" in
        jp4) printf '%s\n' "${PINS_JP4[@]}" ;;
        jp6) printf '%s\n' "${PINS_JP6[@]}" ;;
    esac
}

sdists() {
    case "$PLATFORM" in
        jp4) printf '%s\n' "${SDISTS_JP4[@]}" ;;
        jp6) printf '%s\n' "${SDISTS_JP6[@]}" ;;
    esac
}

package_installed() {
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# JetPack's own packages (apt, from the device's configured NVIDIA/Ubuntu sources).
# Text in the worker's language (edge/text.py): Pillow's FreeType with libraqm shaping (python3-pil
# dlopens libraqm.so.0; universe on Ubuntu 18.04) and fonts for Latin, Devanagari (Hindi) and Bengali.
apt_packages() {
    local common=(python3-venv python3-dev python3-numpy build-essential python3-libnvinfer libopencv-python
                  xserver-xorg-core xauth x11-xserver-utils gstreamer1.0-tools
                  python3-pil libraqm0 fonts-dejavu-core fonts-lohit-deva fonts-lohit-beng-bengali)
    case "$PLATFORM" in
        jp4) printf '%s\n' "${common[@]}" ;;
        jp6) printf '%s\n' "${common[@]}" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Steps.

step_preflight() {
    begin_step preflight "run as root (sudo) on the Jetson itself"
    detect_platform
    say "  platform: $(platform_name), L4T ${L4T_RELEASE:-unknown}"
    if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        fail "must run as root: sudo $0"
    fi
    if [ -n "$ROOT" ] && [ "$DRY_RUN" -eq 0 ]; then
        local step
        for step in "${!SELECTED[@]}"; do
            if [[ " ${FILE_STEPS[*]} " != *" $step "* ]]; then
                HINT="ROOT= is for tests; with ROOT set only these steps run for real: ${FILE_STEPS[*]}"
                fail "step '$step' changes the live system and cannot run into ROOT=$ROOT"
            fi
        done
    fi
    if [ -z "$ROOT" ] && [ -x "$PYTHON" ]; then
        local have want
        have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        want="$(expected_python)"
        if [ "$have" != "$want" ]; then
            if [ "$FORCE" -eq 0 ]; then
                HINT="JetPack's Python for this path is $want; reflash with the matching JetPack, or --force"
                fail "$PYTHON is Python $have, expected $want"
            fi
            say "  warning: Python $have, expected $want (--force)"
        fi
    fi
}

step_packages() {
    begin_step packages "connect the unit to a network once (apt uses the NVIDIA L4T and Ubuntu sources configured by JetPack), or install the listed .deb files from a USB stick with: sudo apt-get install ./*.deb"
    local missing=() pkg
    while read -r pkg; do
        if package_installed "$pkg"; then
            ok "$pkg installed"
        else
            missing+=("$pkg")
        fi
    done < <(apt_packages)
    if [ ! -x "$ROOT$CUDA_HOME/bin/nvcc" ] || [ ! -f "$ROOT$CUDA_HOME/include/cuda.h" ]; then
        case "$PLATFORM" in
            jp4) missing+=(nvidia-cuda) ;;
            jp6) missing+=(nvidia-cuda-dev) ;;
        esac
    else
        ok "CUDA toolkit in $CUDA_HOME (nvcc, cuda.h) for building pycuda"
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

step_user() {
    begin_step user "check /etc/passwd and /etc/group; the user is created with useradd --system"
    if user_exists "$KIOSK_USER"; then
        ok "user $KIOSK_USER exists"
    else
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "medkiosk kiosk" "$KIOSK_USER"
    fi
    # video: GPU, NvMap and camera nodes; render: /dev/dri/renderD* on JetPack 6.
    local group
    for group in video render; do
        if ! group_exists "$group"; then
            ok "no group $group on this system"
        elif user_exists "$KIOSK_USER" && in_group "$KIOSK_USER" "$group"; then
            ok "$KIOSK_USER in group $group"
        else
            run usermod -a -G "$group" "$KIOSK_USER"
        fi
    done
}

step_dirs() {
    begin_step dirs "check that / is writable (with --readonly-root use overlayroot-chroot)"
    ensure_dir "$PREFIX" 0755
    ensure_dir "$LIBEXEC" 0755
    ensure_dir "$PREFIX/docs" 0755
    ensure_dir "$CONF_DIR" 0755
    # Patient cases: private to the kiosk user.
    ensure_dir "$STATE_DIR" 0700 "$KIOSK_USER:$KIOSK_USER"
    ensure_dir "$ENGINE_CACHE" 0700 "$KIOSK_USER:$KIOSK_USER"
    ensure_dir "$STATE_DIR/cuda-cache" 0700 "$KIOSK_USER:$KIOSK_USER"
    # E key: the kiosk prepares each USB export here; the root helper copies it to the stick.
    ensure_dir "$USB_OUTBOX" 0700 "$KIOSK_USER:$KIOSK_USER"
}

find_wheelhouse() {
    if [ -z "$WHEELHOUSE" ] && [ -d "$PROJECT_DIR/wheelhouse" ]; then
        WHEELHOUSE="$PROJECT_DIR/wheelhouse"
    fi
}

medkiosk_wheel() {
    local wheel=""
    find_wheelhouse
    if [ -n "$WHEELHOUSE" ]; then
        wheel="$(find "$WHEELHOUSE" -maxdepth 1 -name 'medkiosk-*.whl' | sort | tail -n 1)"
    fi
    if [ -z "$wheel" ] && [ -d "$PROJECT_DIR/dist" ]; then
        wheel="$(find "$PROJECT_DIR/dist" -maxdepth 1 -name 'medkiosk-*.whl' | sort | tail -n 1)"
    fi
    printf '%s' "$wheel"
}

# wheelhouse_has NAME==VERSION: a wheel or sdist of exactly that release is in the wheelhouse
# (names compared the way pip normalises them: case, "-" and "_" do not matter).
wheelhouse_has() {
    local stem file base
    # pycuda==2022.1 -> pycuda_2022.1; file names get the same folding, so "-" becomes "_".
    stem="$(printf '%s' "${1%%==*}_${1##*==}" | tr 'A-Z-' 'a-z_')"
    for file in "$WHEELHOUSE"/*; do
        base="$(basename "$file" | tr 'A-Z-' 'a-z_')"
        case "$base" in
            "$stem"_*.whl | "$stem".tar.gz | "$stem".zip) return 0 ;;
        esac
    done
    return 1
}

# Pins not yet installed in the venv (pip freeze --all, names compared case-insensitively).
missing_pins() {
    local frozen=""
    if [ -x "$ROOT$VENV/bin/python" ] && [ "$DRY_RUN" -eq 0 ]; then
        frozen="$("$ROOT$VENV/bin/python" -m pip freeze --all 2>/dev/null | tr 'A-Z_' 'a-z-' || true)"
    fi
    local pin normal
    while read -r pin; do
        normal="$(printf '%s' "$pin" | tr 'A-Z_' 'a-z-')"
        if ! grep -Fqx "$normal" <<<"$frozen"; then
            printf '%s\n' "$pin"
        fi
    done < <(pins)
}

step_venv() {
    begin_step venv "make the wheelhouse on a PC with internet: ./jetson_setup.sh --make-wheelhouse wheelhouse --target $PLATFORM, copy it next to this script (or pass --wheelhouse DIR), and re-run"
    local py="$ROOT$VENV/bin/python"
    if [ -x "$py" ]; then
        grep -q '^include-system-site-packages = true' "$ROOT$VENV/pyvenv.cfg" ||
            fail "$VENV exists without --system-site-packages (JetPack's TensorRT and OpenCV would be invisible); delete it: sudo rm -rf $VENV, and re-run"
        ok "virtualenv $VENV (--system-site-packages)"
    else
        run "$PYTHON" -m venv --system-site-packages "$ROOT$VENV"
    fi

    local missing=() absent=() pin
    mapfile -t missing < <(missing_pins)
    find_wheelhouse
    if [ "${#missing[@]}" -eq 0 ]; then
        ok "pinned packages installed: $(pins | tr '\n' ' ')"
    elif [ -z "$WHEELHOUSE" ]; then
        problem "no wheelhouse for: ${missing[*]} (nothing is downloaded on the device)"
    else
        for pin in "${missing[@]}"; do
            wheelhouse_has "$pin" || absent+=("$pin")
        done
        if [ "${#absent[@]}" -gt 0 ]; then
            problem "wheelhouse $WHEELHOUSE lacks: ${absent[*]}"
        fi
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        local pip=("$py" -m pip install --no-index --find-links "${WHEELHOUSE:-WHEELHOUSE}")
        # Build tools first (JetPack 4.6's venv pip 9 knows no --no-build-isolation), then pycuda
        # and its deps built against JetPack's numpy and the local CUDA.
        run "${pip[@]}" "$(pins | grep '^pip==')" "$(pins | grep '^setuptools==')" "$(pins | grep '^wheel==')"
        local rest=()
        mapfile -t rest < <(pins | grep -v -E '^(pip|setuptools|wheel)==')
        # CPATH/LIBRARY_PATH: pycuda's setup looks for cuda.h and libcudart in CUDA_ROOT's
        # include/lib64; JetPack keeps them under targets/aarch64-linux, linked from there.
        run env CUDA_ROOT="$CUDA_HOME" CPATH="$CUDA_HOME/include" LIBRARY_PATH="$CUDA_HOME/lib64" \
            PATH="$CUDA_HOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            "${pip[@]}" --no-build-isolation "${rest[@]}"
    fi

    local wheel stamp="$ROOT$PREFIX/.medkiosk-wheel.sha256" digest
    wheel="$(medkiosk_wheel)"
    if [ -z "$wheel" ]; then
        problem "no medkiosk-*.whl in the wheelhouse or $PROJECT_DIR/dist (make one on a PC: pip wheel --no-deps -w wheelhouse .)"
        return 0
    fi
    digest="$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        ok "medkiosk $(basename "$wheel") installed"
    else
        # --no-deps: numpy, OpenCV and TensorRT are JetPack's; the `edge` extra is for PCs.
        run "$py" -m pip install --no-index --no-deps --force-reinstall "$wheel"
        if [ "$DRY_RUN" -eq 0 ]; then
            printf '%s\n' "$digest" >"$stamp"
        fi
    fi
}

step_verify() {
    begin_step verify "JetPack's python3-libnvinfer and libopencv-python must be installed (apt), and no pip opencv-python in $VENV: $VENV/bin/pip uninstall opencv-python opencv-python-headless"
    if [ "$DRY_RUN" -eq 1 ]; then
        say "  [dry-run] would check: $VENV/bin/python imports tensorrt, pycuda, numpy and cv2 from JetPack with GStreamer, and cryptography (bundle signatures)"
        return 0
    fi
    local report
    report="$("$ROOT$VENV/bin/python" - "$VENV" <<'PY' 2>&1
import sys
venv = sys.argv[1]
problems = []
try:
    import cv2
    info = cv2.getBuildInformation()
    gst = [line for line in info.splitlines() if line.strip().startswith("GStreamer:")]
    if not gst or "YES" not in gst[0]:
        problems.append("OpenCV %s at %s has no GStreamer" % (cv2.__version__, cv2.__file__))
    if cv2.__file__.startswith(venv):
        problems.append("OpenCV comes from pip inside %s, not from JetPack" % venv)
    print("opencv %s (%s)" % (cv2.__version__, cv2.__file__))
except ImportError as exc:
    problems.append("cannot import cv2: %s" % exc)
for name in ("numpy", "tensorrt", "pycuda", "cryptography"):
    try:
        module = __import__(name)
        print("%s %s" % (name, getattr(module, "__version__", "?")))
    except ImportError as exc:
        problems.append("cannot import %s: %s" % (name, exc))
for problem in problems:
    print("PROBLEM: " + problem)
sys.exit(1 if problems else 0)
PY
)" || fail "the virtualenv cannot use JetPack's libraries: $(printf '%s' "$report" | grep PROBLEM | tr '\n' ' ')"
    printf '%s\n' "$report" | while read -r line; do ok "$line"; done
}

step_models() {
    begin_step models "pass --models DIR with one folder per model bundle (each with manifest.json)"
    [ -d "$MODELS_SRC" ] || problem "model folder $MODELS_SRC does not exist"
    local bundle name count=0
    ensure_dir "$MODELS_DEST" 0755
    for bundle in "$MODELS_SRC"/*/; do
        [ -f "$bundle/manifest.json" ] || continue
        name="$(basename "$bundle")"
        count=$((count + 1))
        if [ -d "$ROOT$MODELS_DEST/$name" ] && diff -rq "$bundle" "$ROOT$MODELS_DEST/$name" >/dev/null 2>&1; then
            ok "bundle $name up to date"
            continue
        fi
        # Copy beside, then swap: a power cut never leaves a half-copied bundle in place.
        if [ -e "$ROOT$MODELS_DEST/.$name.new" ]; then
            run rm -rf "$ROOT$MODELS_DEST/.$name.new"
        fi
        run cp -R "$bundle" "$ROOT$MODELS_DEST/.$name.new"
        run chmod -R u=rwX,go=rX "$ROOT$MODELS_DEST/.$name.new"
        if [ -e "$ROOT$MODELS_DEST/$name" ]; then
            run rm -rf "$ROOT$MODELS_DEST/$name"
        fi
        run mv "$ROOT$MODELS_DEST/.$name.new" "$ROOT$MODELS_DEST/$name"
    done
    [ "$count" -gt 0 ] || problem "no model bundles (folders with manifest.json) in $MODELS_SRC"
}

step_config() {
    begin_step config "check $CONF_FILE; the shipped default is $CONF_FILE.default"
    install_file "$PROJECT_DIR/config/medkiosk.conf" "$CONF_FILE.default" 0644
    if [ -f "$ROOT$CONF_FILE" ]; then
        if cmp -s "$PROJECT_DIR/config/medkiosk.conf" "$ROOT$CONF_FILE"; then
            ok "$CONF_FILE is the default"
        else
            ok "$CONF_FILE kept as edited (differs from $CONF_FILE.default)"
        fi
    else
        run install -m 0644 "$PROJECT_DIR/config/medkiosk.conf" "$ROOT$CONF_FILE"
    fi
    # The maintainers' public keys: the kiosk loads only bundles signed by one of them.
    local key count=0
    ensure_dir "$TRUSTED_KEYS" 0755
    for key in "$PROJECT_DIR"/config/trusted_keys/*.pub; do
        [ -f "$key" ] || continue
        install_file "$key" "$TRUSTED_KEYS/$(basename "$key")" 0644
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || problem "no trusted public keys in $PROJECT_DIR/config/trusted_keys: no model bundle could load"
    install_file "$PROJECT_DIR/docs/technician.md" "$PREFIX/docs/technician.md" 0644
}

current_display_manager() {
    local link="$ROOT$UNIT_DIR/display-manager.service"
    [ -L "$link" ] && basename "$(readlink "$link")"
    return 0
}

step_units() {
    begin_step units "check the unit files with: systemd-analyze verify $UNIT_DIR/medkiosk.service"
    local unit before=$CHANGES
    for unit in "${ALL_UNITS[@]}" "${TEMPLATE_UNITS[@]}"; do
        install_file "$PROJECT_DIR/systemd/$unit" "$UNIT_DIR/$unit" 0644
    done
    install_file "$PROJECT_DIR/systemd/medkiosk-display" "$LIBEXEC/medkiosk-display" 0755
    install_file "$PROJECT_DIR/systemd/medkiosk-usb-export" "$LIBEXEC/medkiosk-usb-export" 0755
    if [ -z "$ROOT" ] && [ "$CHANGES" -gt "$before" ]; then
        run systemctl daemon-reload
    fi
    for unit in "${KIOSK_UNITS[@]}"; do
        if [ "$("${SYSTEMCTL[@]}" is-enabled "$unit" 2>/dev/null || true)" = enabled ]; then
            ok "$unit enabled"
        else
            run "${SYSTEMCTL[@]}" enable "$unit"
        fi
    done
    # The kiosk owns the screen: the desktop's display manager (gdm3 on JetPack) goes off, and is
    # remembered so --uninstall turns it back on.
    local dm
    dm="$(current_display_manager)"
    if [ -n "$dm" ]; then
        state_set display_manager "$dm"
        run "${SYSTEMCTL[@]}" disable "$dm"
    else
        ok "no desktop display manager enabled"
    fi
    if [ -z "$ROOT" ]; then
        if [ "$(systemctl get-default)" = graphical.target ]; then
            ok "default target graphical.target"
        else
            state_set default_target "$(systemctl get-default)"
            run systemctl set-default graphical.target
        fi
    fi
}

step_display() {
    begin_step display "see /var/log/Xorg.0.log; the kiosk's X server is medkiosk-display.service"
    install_text "$XORG_SNIPPET" 0644 <<'EOF'
# medkiosk (jetson_setup.sh): the kiosk screen never blanks and never powers down (0 = never).
# Only ServerFlags: L4T's own /etc/X11/xorg.conf keeps its Device/Screen sections. The X server
# is also started with -s 0 -dpms (medkiosk-display).
Section "ServerFlags"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection
EOF
}

step_usb() {
    begin_step usb "check with: udevadm test /sys/class/block/sda1"
    # Read-only, no programs, no device files: a USB stick only brings images (and model updates).
    # It becomes writable only while the E key's root helper (medkiosk-usb-export) copies cases to
    # it, then read-only again. FAT/exFAT/NTFS have no owners: their files belong to the kiosk user,
    # private (0600/0700), so what the export writes there is private too.
    local before=$CHANGES
    install_text "$USB_RULE" 0644 <<'EOF'
# medkiosk (jetson_setup.sh): mount a USB stick's file system read-only at /media/usb for the kiosk.
# Only /opt/medkiosk/libexec/medkiosk-usb-export (E key) remounts it read-write, for the copy.
ACTION=="add", SUBSYSTEMS=="usb", SUBSYSTEM=="block", ENV{ID_FS_USAGE}=="filesystem", ENV{ID_FS_TYPE}=="vfat|exfat|ntfs", RUN{program}+="/usr/bin/systemd-mount --no-block --collect --options=ro,nosuid,nodev,noexec,uid=medkiosk,gid=medkiosk,fmask=0177,dmask=0077 $devnode /media/usb"
ACTION=="add", SUBSYSTEMS=="usb", SUBSYSTEM=="block", ENV{ID_FS_USAGE}=="filesystem", ENV{ID_FS_TYPE}!="vfat|exfat|ntfs", RUN{program}+="/usr/bin/systemd-mount --no-block --collect --options=ro,nosuid,nodev,noexec $devnode /media/usb"
ACTION=="remove", SUBSYSTEMS=="usb", SUBSYSTEM=="block", ENV{ID_FS_USAGE}=="filesystem", RUN{program}+="/usr/bin/systemd-umount $devnode"
EOF
    ensure_dir /media/usb 0755
    if [ -z "$ROOT" ] && [ "$CHANGES" -gt "$before" ]; then
        run udevadm control --reload
    fi
}

step_journald() {
    begin_step journald "check with: journalctl --disk-usage"
    local before=$CHANGES
    # Persistent, so a crash before a power cut can be read after it; capped so logs never fill
    # the SD card the cases live on.
    install_text "$JOURNALD_SNIPPET" 0644 <<'EOF'
# medkiosk (jetson_setup.sh): keep logs across reboots, at most 200 MB, never the last 1 GB.
[Journal]
Storage=persistent
SystemMaxUse=200M
SystemKeepFree=1G
SystemMaxFileSize=20M
MaxRetentionSec=3month
EOF
    ensure_dir /var/log/journal 2755
    if [ -z "$ROOT" ] && [ "$CHANGES" -gt "$before" ]; then
        run systemd-tmpfiles --create --prefix /var/log/journal
        run systemctl restart systemd-journald
    fi
}

# The nvpmodel mode named MAXN (MAXN_SUPER on a JetPack 6.2 Orin Nano), else mode 0.
max_power_mode() {
    local conf="$ROOT/etc/nvpmodel.conf" id
    if [ -f "$conf" ]; then
        id="$(sed -n 's/.*POWER_MODEL[[:space:]]*ID=\([0-9]*\)[[:space:]]*NAME=MAXN_SUPER.*/\1/p' "$conf" | head -n 1)"
        [ -n "$id" ] || id="$(sed -n 's/.*POWER_MODEL[[:space:]]*ID=\([0-9]*\)[[:space:]]*NAME=MAXN.*/\1/p' "$conf" | head -n 1)"
    fi
    printf '%s' "${id:-0}"
}

step_power() {
    begin_step power "check the power supply (Nano: 5 V 4 A barrel jack with the J48 jumper); run with --no-max-power to keep the current mode"
    if [ "$MAX_POWER" -eq 0 ]; then
        ok "nvpmodel left as it is (--no-max-power)"
        return 0
    fi
    local want current=""
    want="$(max_power_mode)"
    if command -v nvpmodel >/dev/null; then
        current="$(nvpmodel -q 2>/dev/null | sed -n '2p' | tr -dc '0-9')"
    elif [ "$DRY_RUN" -eq 0 ]; then
        fail "nvpmodel not found (it is part of JetPack: nvidia-l4t-nvpmodel)"
    fi
    if [ "$current" = "$want" ]; then
        ok "nvpmodel mode $want (max)"
    else
        [ -n "$current" ] && state_set nvpmodel_mode "$current"
        run nvpmodel -m "$want"
    fi
}

step_clocks() {
    begin_step clocks "jetson_clocks is part of JetPack (nvidia-l4t-tools)"
    if [ "$JETSON_CLOCKS" -eq 0 ]; then
        if [ "$("${SYSTEMCTL[@]}" is-enabled medkiosk-clocks.service 2>/dev/null || true)" = enabled ]; then
            ok "medkiosk-clocks.service stays enabled (an earlier --jetson-clocks); turn off: sudo systemctl disable medkiosk-clocks"
        else
            ok "clocks not pinned (pass --jetson-clocks to pin them)"
        fi
        return 0
    fi
    if [ "$("${SYSTEMCTL[@]}" is-enabled medkiosk-clocks.service 2>/dev/null || true)" = enabled ]; then
        ok "medkiosk-clocks.service enabled"
    else
        run "${SYSTEMCTL[@]}" enable medkiosk-clocks.service
    fi
}

step_readonly() {
    begin_step readonly "put /var/lib/medkiosk on its own partition first, e.g. sudo mkfs.ext4 -L MEDKIOSK-DATA /dev/sda1; add 'LABEL=MEDKIOSK-DATA /var/lib/medkiosk ext4 defaults,noatime 0 2' to /etc/fstab; sudo mount -a; re-run"
    if [ "$READONLY_ROOT" -eq 0 ]; then
        ok "root file system stays writable (pass --readonly-root for a RAM overlay)"
        return 0
    fi
    if [ -z "$ROOT" ] && [ "$(findmnt -n -o FSTYPE / 2>/dev/null || true)" = overlay ]; then
        ok "root is already an overlay (read-only underneath)"
        return 0
    fi
    if ! awk '$1 !~ /^#/ && $2 == "/var/lib/medkiosk" {found=1} END {exit !found}' "$ROOT/etc/fstab" 2>/dev/null; then
        problem "/var/lib/medkiosk has no /etc/fstab entry: with a read-only root the cases must live on a writable partition"
        return 0
    fi
    local before=$CHANGES
    if ! package_installed overlayroot; then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends overlayroot
    else
        ok "overlayroot installed"
    fi
    # recurse=0: only / gets the overlay; /var/lib/medkiosk (its own mount) stays writable.
    install_text "$OVERLAYROOT_CONF" 0644 <<'EOF'
# medkiosk (jetson_setup.sh --readonly-root): root is read-only with a RAM overlay; other mounts
# (/var/lib/medkiosk) stay writable. To change the system: sudo overlayroot-chroot
overlayroot="tmpfs:swap=0,recurse=0"
EOF
    # Logs next to the cases, so they survive a reboot.
    ensure_dir "$STATE_DIR/journal" 2755
    local bind='/var/lib/medkiosk/journal /var/log/journal none bind,nofail,x-systemd.requires-mounts-for=/var/lib/medkiosk 0 0'
    if ! grep -qF "$bind" "$ROOT/etc/fstab"; then
        install_text /etc/fstab 0644 < <(cat "$ROOT/etc/fstab"; printf '%s\n' "$bind")
    else
        ok "journal bind mount in /etc/fstab"
    fi
    # L4T boots the initrd named in extlinux.conf (/boot/initrd); overlayroot lives in the initramfs,
    # so it is rebuilt when overlayroot or its config just changed.
    if [ "$CHANGES" -eq "$before" ]; then
        ok "initramfs already built with overlayroot"
    else
        local kernel initrd
        kernel="$(uname -r)"
        initrd="/boot/initrd.img-$kernel"
        if [ -f "$ROOT$initrd" ]; then
            run update-initramfs -u -k "$kernel"
        else
            run update-initramfs -c -k "$kernel"
        fi
        if grep -q '^[[:space:]]*INITRD[[:space:]]*/boot/initrd[[:space:]]*$' "$ROOT/boot/extlinux/extlinux.conf" 2>/dev/null; then
            [ -f "$ROOT/boot/initrd.medkiosk-backup" ] || run cp -p "$ROOT/boot/initrd" "$ROOT/boot/initrd.medkiosk-backup"
            run cp "$ROOT$initrd" "$ROOT/boot/initrd"
        fi
    fi
    say "  reboot to activate; then 'findmnt /' shows overlay. Changes to / vanish on reboot by design."
}

step_engines() {
    begin_step engines "read the messages above; a bundle whose engine fails to build cannot run on TensorRT: check it with $VENV/bin/medkiosk bundle verify $MODELS_DEST/NAME"
    run runuser -u "$KIOSK_USER" -- env HOME="$STATE_DIR" CUDA_CACHE_PATH="$STATE_DIR/cuda-cache" \
        "$VENV/bin/medkiosk" export engines --models "$MODELS_DEST" --cache "$ENGINE_CACHE" --precision fp16
}

# predict_selftest: the selftest's verdict before anything is installed, from this folder's own
# medkiosk (`selftest --static`: config, trusted keys, each bundle's signature and contract, the
# modules present) on the config the unit will have and the bundles --models installs.
predict_selftest() {
    local conf="$ROOT$CONF_FILE" py output status=0 line
    [ -f "$conf" ] || conf="$PROJECT_DIR/config/medkiosk.conf"
    py="$(command -v python3 || true)"
    if [ -z "$py" ]; then
        say "  [dry-run] predicted selftest: unknown (no python3 to run the static checks)"
        return 0
    fi
    if output="$(cd "$PROJECT_DIR" && PYTHONPATH="$PROJECT_DIR" "$py" -m edge selftest --static \
        --config "$conf" --models "$MODELS_SRC" 2>&1)"; then
        status=0
    else
        status=$?
    fi
    while IFS= read -r line; do
        say "  [dry-run] predicted: $line"
    done <<<"$output"
    if [ "$status" -ne 0 ]; then
        PREDICTED_FAIL=1
        say "  [dry-run] predicted selftest: FAIL - a real run would end NOT READY; fix the [FAIL] lines first"
    else
        say "  [dry-run] predicted selftest: PASS for configuration, keys and bundles (golden images, camera and display are checked on the unit)"
    fi
}

step_selftest() {
    begin_step selftest "read the selftest lines above (docs/technician.md explains each); fix, then re-run: sudo ./jetson_setup.sh --steps engines,selftest"
    local report="$STATE_DIR/selftest.txt"
    if [ "$DRY_RUN" -eq 1 ]; then
        say "  [dry-run] runuser -u $KIOSK_USER -- $VENV/bin/medkiosk selftest --config $CONF_FILE > $report"
        predict_selftest
        return 0
    fi
    say "  + runuser -u $KIOSK_USER -- $VENV/bin/medkiosk selftest --config $CONF_FILE"
    local status=0
    runuser -u "$KIOSK_USER" -- env HOME="$STATE_DIR" CUDA_CACHE_PATH="$STATE_DIR/cuda-cache" \
        "$VENV/bin/medkiosk" selftest --config "$CONF_FILE" 2>&1 | tee "$report" | tee -a "$LOG_FILE" || status=$?
    chmod 0600 "$report"
    if [ "$status" -ne 0 ]; then
        SELFTEST_OK=0
        say "  SELFTEST FAILED (exit $status): this unit is NOT ready. Report: $report"
        say "  What to do: $HINT"
    else
        ok "selftest passed (report: $report)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Uninstall.

do_uninstall() {
    begin_step uninstall "run as root; with --readonly-root active, run it inside: sudo overlayroot-chroot"
    # The same platform check as install: never strip units and folders from some other machine.
    detect_platform
    say "  platform: $(platform_name), L4T ${L4T_RELEASE:-unknown}"
    if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        fail "must run as root: sudo $0 --uninstall"
    fi
    if [ -z "$ROOT" ] && [ "$(findmnt -n -o FSTYPE / 2>/dev/null || true)" = overlay ] && [ "$DRY_RUN" -eq 0 ]; then
        fail "the root file system is a read-only overlay; changes would vanish at reboot"
    fi
    local unit
    for unit in "${ALL_UNITS[@]}"; do
        if [ -f "$ROOT$UNIT_DIR/$unit" ]; then
            if [ -z "$ROOT" ]; then
                run systemctl disable --now "$unit"
            else
                run "${SYSTEMCTL[@]}" disable "$unit"
            fi
        fi
        remove_path "$UNIT_DIR/$unit"
    done
    for unit in "${TEMPLATE_UNITS[@]}"; do
        remove_path "$UNIT_DIR/$unit"
    done
    local dm target mode
    dm="$(state_get display_manager)"
    target="$(state_get default_target)"
    mode="$(state_get nvpmodel_mode)"
    if [ -n "$dm" ]; then
        run "${SYSTEMCTL[@]}" enable "$dm"
    fi
    if [ -n "$target" ] && [ -z "$ROOT" ]; then
        run systemctl set-default "$target"
    fi
    if [ -n "$mode" ] && [ -z "$ROOT" ]; then
        run nvpmodel -m "$mode"
    fi
    remove_path "$XORG_SNIPPET"
    remove_path "$JOURNALD_SNIPPET"
    remove_path "$USB_RULE"
    # Folders this script may have created, if nothing else lives there (/var/log/journal stays:
    # it holds the logs).
    local folder
    for folder in /media/usb "$(dirname "$XORG_SNIPPET")" "$(dirname "$JOURNALD_SNIPPET")"; do
        if [ -d "$ROOT$folder" ] && [ -z "$(ls -A "$ROOT$folder")" ]; then
            run rmdir "$ROOT$folder"
        fi
    done
    if [ -f "$ROOT$OVERLAYROOT_CONF" ] && grep -q medkiosk "$ROOT$OVERLAYROOT_CONF"; then
        remove_path "$OVERLAYROOT_CONF"
        if [ -f "$ROOT/boot/initrd.medkiosk-backup" ]; then
            run mv "$ROOT/boot/initrd.medkiosk-backup" "$ROOT/boot/initrd"
        fi
        if [ -f "$ROOT/etc/fstab" ] && grep -q '^/var/lib/medkiosk/journal ' "$ROOT/etc/fstab"; then
            run sed -i '\|^/var/lib/medkiosk/journal |d' "$ROOT/etc/fstab"
        fi
    fi
    # An edited config is worth keeping with the cases.
    if [ "$PURGE" -eq 0 ] && [ -f "$ROOT$CONF_FILE" ] && [ -d "$ROOT$STATE_DIR" ] &&
        ! cmp -s "$ROOT$CONF_FILE" "$PROJECT_DIR/config/medkiosk.conf"; then
        run cp -p "$ROOT$CONF_FILE" "$ROOT$STATE_DIR/medkiosk.conf.saved"
    fi
    remove_path "$CONF_DIR"
    remove_path "$PREFIX"
    if [ "$PURGE" -eq 1 ]; then
        remove_path "$STATE_DIR"
        if user_exists "$KIOSK_USER"; then
            run userdel "$KIOSK_USER"
        fi
    elif [ -d "$ROOT$STATE_DIR" ]; then
        say "  kept $STATE_DIR (patient cases, engines, logs) and the $KIOSK_USER user; --purge deletes them"
    fi
    if [ -z "$ROOT" ] && [ "$CHANGES" -gt 0 ]; then
        run systemctl daemon-reload
    fi
}

# ---------------------------------------------------------------------------------------------
# Wheelhouse (on a PC with internet access, not on the device).

make_wheelhouse() {
    [ -n "$TARGET" ] || usage_error "--make-wheelhouse needs --target jp4 or jp6"
    PLATFORM=$TARGET
    begin_step wheelhouse "needs internet access to PyPI and pip >= 21 on this PC"
    local pyver abi
    case "$PLATFORM" in
        jp4) pyver=3.6 abi=cp36m ;;
        jp6) pyver=3.10 abi=cp310 ;;
    esac
    local pip=("$PYTHON" -m pip download --dest "$MAKE_WHEELHOUSE")
    local source_pins=() binary_pins=() pin name
    while read -r pin; do
        name="${pin%%==*}"
        if sdists | grep -qx "$name"; then
            source_pins+=("$pin")
        else
            binary_pins+=("$pin")
        fi
    done < <(pins)
    ensure_dir_plain "$MAKE_WHEELHOUSE"
    run "${pip[@]}" --no-deps --only-binary :all: --implementation cp --python-version "$pyver" --abi "$abi" \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform any "${binary_pins[@]}"
    # pycuda (and, for 3.6, pytools) exist only as source: built on the device, against its CUDA.
    run "${pip[@]}" --no-deps --no-binary :all: --no-build-isolation "${source_pins[@]}"
    run "$PYTHON" -m pip wheel --no-deps --wheel-dir "$MAKE_WHEELHOUSE" "$PROJECT_DIR"
    say "  wheelhouse ready: copy $MAKE_WHEELHOUSE to the USB stick next to jetson_setup.sh as wheelhouse/"
}

ensure_dir_plain() {
    if [ -d "$1" ]; then
        ok "folder $1"
    else
        run mkdir -p "$1"
    fi
}

# ---------------------------------------------------------------------------------------------

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dry-run) DRY_RUN=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --force) FORCE=1 ;;
            --jetson-clocks) JETSON_CLOCKS=1 ;;
            --readonly-root) READONLY_ROOT=1 ;;
            --no-max-power) MAX_POWER=0 ;;
            --target)
                [ $# -ge 2 ] || usage_error "--target needs jp4 or jp6"
                case "$2" in jp4 | jp6) TARGET=$2 ;; *) usage_error "--target must be jp4 or jp6, not '$2'" ;; esac
                shift
                ;;
            --models)
                [ $# -ge 2 ] || usage_error "--models needs a folder"
                MODELS_SRC="$(cd "$2" 2>/dev/null && pwd)" || usage_error "--models $2: no such folder"
                shift
                ;;
            --wheelhouse)
                [ $# -ge 2 ] || usage_error "--wheelhouse needs a folder"
                WHEELHOUSE="$(cd "$2" 2>/dev/null && pwd)" || usage_error "--wheelhouse $2: no such folder"
                shift
                ;;
            --steps)
                [ $# -ge 2 ] || usage_error "--steps needs a comma list"
                STEPS_ARG=$2
                shift
                ;;
            --make-wheelhouse)
                [ $# -ge 2 ] || usage_error "--make-wheelhouse needs a folder"
                MAKE_WHEELHOUSE=$2
                shift
                ;;
            --log)
                [ $# -ge 2 ] || usage_error "--log needs a file"
                LOG_FILE=$2
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) usage_error "unknown option '$1'" ;;
        esac
        shift
    done
    [ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || usage_error "--purge only goes with --uninstall"
    local step
    if [ -n "$STEPS_ARG" ]; then
        IFS=',' read -r -a chosen <<<"$STEPS_ARG"
        for step in "${chosen[@]}"; do
            [[ " ${ALL_STEPS[*]} " == *" $step "* ]] || usage_error "unknown step '$step' (steps: ${ALL_STEPS[*]})"
            SELECTED[$step]=1
        done
    else
        for step in "${ALL_STEPS[@]}"; do
            SELECTED[$step]=1
        done
    fi
}

setup_log() {
    [ -n "$LOG_FILE" ] || LOG_FILE="$ROOT/var/log/medkiosk-setup.log"
    if [ "$DRY_RUN" -eq 0 ]; then
        mkdir -p "$(dirname "$LOG_FILE")"
        touch "$LOG_FILE"
        chmod 0600 "$LOG_FILE"
    fi
}

cleanup() {
    [ -n "$TMP_DIR" ] && rm -rf "$TMP_DIR"
    return 0
}

main() {
    parse_args "$@"
    TMP_DIR="$(mktemp -d)"
    trap cleanup EXIT
    trap 'on_error $? $LINENO' ERR
    if [ -n "$MAKE_WHEELHOUSE" ]; then
        LOG_FILE=""
        make_wheelhouse
        return 0
    fi
    setup_log
    say "medkiosk appliance setup$([ "$DRY_RUN" -eq 1 ] && printf ' (dry run: nothing is changed)')${ROOT:+ into ROOT=$ROOT}"
    if [ "$UNINSTALL" -eq 1 ]; then
        do_uninstall
        say ""
        say "Uninstalled: $CHANGES change(s). Reboot to get the desktop back."
        return 0
    fi
    step_preflight
    local step
    for step in "${ALL_STEPS[@]}"; do
        if selected "$step"; then
            "step_$step"
        fi
    done
    say ""
    if [ "$DRY_RUN" -eq 1 ]; then
        say "Dry run: $CHANGES action(s) planned for $(platform_name), $PROBLEMS problem(s) to fix first. Nothing was changed."
        [ "$PROBLEMS" -eq 0 ] || exit 1
        if [ "$PREDICTED_FAIL" -eq 1 ]; then
            say "Predicted: NOT READY - the selftest would fail (see the predicted lines above)."
            exit 3
        fi
    elif [ "$CHANGES" -eq 0 ]; then
        say "Nothing changed: this unit was already set up (0 changes)."
    else
        say "Done: $CHANGES change(s)."
    fi
    if [ "$SELFTEST_OK" -eq 0 ]; then
        say "NOT READY: the selftest failed; do not hand this unit over. See $STATE_DIR/selftest.txt"
        exit 3
    fi
    if selected selftest && [ "$DRY_RUN" -eq 0 ]; then
        say "READY: reboot (sudo reboot) and the unit starts straight into the kiosk."
    fi
}

main "$@"
