#!/usr/bin/env bash
# Run every scenario of the library (scenarios/*.toml) with the given meshsim binary, each into
# DIR/<name>/, for the gate:
#
#   ci/run-library.sh target/release/meshsim out/library
#   target/release/meshsim gate --baseline ci/baselines --current out/library
#
# A scenario whose assertions fail (exit 1) still leaves its report for the gate to judge; bad
# input (exit 2) stops here.
set -euo pipefail
bin=${1:?usage: run-library.sh MESHSIM_BINARY DIR}
dir=${2:?usage: run-library.sh MESHSIM_BINARY DIR}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
n=0
for f in $(ls scenarios/*.toml | grep -v Cargo.toml); do
  name=$(basename "$f" .toml)
  n=$((n + 1))
  echo "  [$n] $name" >&2
  "$bin" run "$f" --out "$dir/$name" --quiet || [ $? -eq 1 ]
done
echo "ran $n scenarios into $dir" >&2
