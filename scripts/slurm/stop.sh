#!/usr/bin/env bash
# Stop the one-node SLURM cluster that start.sh brought up: the daemons named in their pid files
# (packages and configs stay, so start.sh is quick next time). Idempotent.
set -uo pipefail
pidfiles=(/run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid)
for f in "${pidfiles[@]}"; do
  if [ -s "$f" ] && pid="$(cat "$f")" && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" && echo "slurm/stop.sh: stopped $(basename "$f" .pid) ($pid)"
  fi
done
for _ in $(seq 50); do
  alive=0
  for f in "${pidfiles[@]}"; do [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && exit 0
  sleep 0.1
done
echo "slurm/stop.sh: daemons still running after 5 s" >&2
exit 1
