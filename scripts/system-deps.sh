#!/usr/bin/env bash
# Debian packages the test suite uses: a one-node SLURM cluster (slurm-wlm, munge), headless
# Chromium for the episode-viewer test, graphviz for DAG pictures. Installed when missing and
# when we may (root with apt); elsewhere the tests that need them skip, except under CI=true.
set -euo pipefail
need=()
command -v sbatch >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v chromium >/dev/null || need+=(chromium)
command -v dot >/dev/null || need+=(graphviz)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
elif [ "${CI:-}" = true ]; then
  echo "CI needs ${need[*]} but cannot install them (not root or no apt)" >&2
  exit 1
else
  echo "note: ${need[*]} missing; the tests that need them will skip" >&2
fi
