#!/usr/bin/env bash
# Run every shipped scenario (and the 20-service scale scenario) with the given meshsim binary,
# writing each run's outputs (report.json, summary.md, index.html, plots, per-pod metrics,
# traces, access log) under DIR/<name>/. Used to show that a refactor changes no byte:
#
#   scripts/outputs.sh target/release/meshsim /tmp/before   # on the old commit
#   scripts/outputs.sh target/release/meshsim /tmp/after    # on the new one
#   diff -r /tmp/before /tmp/after && echo identical
set -euo pipefail
bin=${1:?usage: outputs.sh MESHSIM_BINARY DIR}
dir=${2:?usage: outputs.sh MESHSIM_BINARY DIR}
cd "$(dirname "$0")/.."
rm -rf "$dir"
mkdir -p "$dir"
for f in $(ls scenarios/*.toml | grep -v Cargo.toml) scenarios/scale/mesh-20.toml; do
  name=$(basename "$f" .toml)
  # Exit 1 (an assertion failed) is an outcome to compare too, not an error here.
  "$bin" run "$f" --out "$dir/$name" --quiet --access-log || [ $? -eq 1 ]
done
echo "wrote $(find "$dir" -type f | wc -l) files for $(ls "$dir" | wc -l) scenarios under $dir"
