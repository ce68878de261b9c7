#!/usr/bin/env bash
# The main job, headless: verify the shipped bundles, then run the real kiosk loop (`medkiosk run`)
# over the sample images of each module, printing one line per result and writing the annotated
# screens to build/demo/<module>/. Usage: scripts/demo.sh [MEDKIOSK] (default .venv/bin/medkiosk)
set -euo pipefail
cd "$(dirname "$0")/.."
medkiosk=${1:-.venv/bin/medkiosk}
out=${DEMO_OUT:-build/demo}

modules=()
for manifest in models/*/manifest.json; do
  [ -e "$manifest" ] || continue
  modules+=("$(basename "$(dirname "$manifest")")")
done
if [ "${#modules[@]}" -eq 0 ]; then
  echo "demo: no bundles under models/ (the shipped modules are missing from this checkout)" >&2
  exit 1
fi

echo "== medkiosk bundle verify: manifest, sha256, ONNX contract, golden images"
"$medkiosk" bundle verify "${modules[@]/#/models/}"

for module in "${modules[@]}"; do
  samples="samples/$module"
  [ -d "$samples" ] || { echo "demo: no samples for $module, skipped"; continue; }
  count=$(find "$samples" -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpeg' -o -name '*.jpg' \) | wc -l)
  # Two frames per image: show it (its result is printed), then F steps to the next image.
  keys=$(printf 'WAIT1,F,%.0s' $(seq "$count")); keys=${keys%,}
  rm -rf "${out:?}/$module"
  echo
  echo "== medkiosk run --module $module --source $samples/ ($count images) -> $out/$module/"
  ls "$samples" | grep -v README | sed 's/^/   /'
  "$medkiosk" run --models models --module "$module" --source "$samples/" \
    --output "file://$PWD/$out/$module/" --no-kiosk --keys "$keys" --max-frames $((2 * count)) \
    --state-dir "$out/state"
done
echo
echo "Annotated screens: $out/<module>/frame_*.png. Decision support only - not a diagnosis."
