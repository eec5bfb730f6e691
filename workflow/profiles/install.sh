#!/usr/bin/env bash
# Make the documented `snakemake --profile slurm all` resolve: Snakemake looks profiles up by
# name in ./NAME and ~/.config/snakemake/NAME, not in workflow/profiles/. Link ours there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
mkdir -p "$dest"
for profile in "$here"/*/; do
  name="$(basename "$profile")"
  ln -sfn "$profile" "$dest/$name"
done
