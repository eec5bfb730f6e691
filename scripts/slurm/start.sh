#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine (Debian 12: slurm-wlm + munge, fake GPU gres),
# recipe of reference/workflow-stack.md §3. Idempotent: installs what is missing, (re)writes the
# configs with the real `hostname -s`, starts only the daemons that are not running, waits until
# `sinfo` shows the node idle. Needs root. Stop with scripts/slurm/stop.sh.
set -euo pipefail
t0=$(date +%s.%N)
here="$(cd "$(dirname "$0")" && pwd)"
say() { echo "slurm/start.sh: $*"; }

if [ "$(id -u)" != 0 ]; then say "must run as root (apt-get, daemons)"; exit 1; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sinfo >/dev/null; then
  say "installing slurm-wlm and munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

host="$(hostname -s)"
cpus="$(nproc)"
mkdir -p /etc/slurm /run/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if [ ! -s /etc/munge/munge.key ]; then
  say "creating the munge key"
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi

changed=0
for f in slurm.conf gres.conf; do
  new="$(sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" "$here/$f")"
  if [ ! -f "/etc/slurm/$f" ] || [ "$(cat "/etc/slurm/$f")" != "$new" ]; then
    printf '%s\n' "$new" > "/etc/slurm/$f"
    changed=1
  fi
done

# daemons are found through their pid files (never by process name)
pidfile() { case "$1" in munged) echo /run/munge/munged.pid ;; *) echo "/run/$1.pid" ;; esac; }
running() { local f; f="$(pidfile "$1")"; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }
stop() { local f; f="$(pidfile "$1")"; if running "$1"; then kill "$(cat "$f")"; fi; }

if ! running munged; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
if [ "$changed" = 1 ]; then   # new config: restart the slurm daemons so they read it
  stop slurmd; stop slurmctld
  for _ in $(seq 50); do running slurmctld || running slurmd || break; sleep 0.1; done
fi
if ! running slurmctld; then say "starting slurmctld"; slurmctld; fi
if ! running slurmd; then say "starting slurmd"; slurmd; fi

for _ in $(seq 120); do
  state="$(sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ')"
  case "$state" in
    *idle*|*mix*|*alloc*) break ;;
    *down*|*drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
if ! sinfo -h -N -o '%t' | grep -Eq 'idle|mix|alloc'; then
  say "node not idle after 60 s:"; sinfo; tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log || true
  exit 1
fi
sinfo
t1=$(date +%s.%N)
say "cluster up on $host in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
