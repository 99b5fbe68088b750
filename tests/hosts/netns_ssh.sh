#!/usr/bin/env bash
# Stands in for ssh when hydra starts a proxy on a bed host (tests/hosts/bed.sh run):
# skips ssh's flags, finds the namespace of the host address, and runs the command
# there under `ip netns exec`.
set -euo pipefail

while [ $# -gt 0 ]; do
  case "$1" in
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;; # ssh options that take a value
    -*) shift ;;
    *) break ;;
  esac
done
host=${1:?netns_ssh.sh: no host given}
shift
state=${HPCDIST_BED_STATE:?netns_ssh.sh: HPCDIST_BED_STATE is not set (use bed.sh run)}
ns=$(awk -v h="${host#*@}" '$1 == h {print $2}' "$state")
[ -n "$ns" ] || { echo "netns_ssh.sh: host '$host' is not in the bed ($state)" >&2; exit 255; }
# ssh joins its arguments into one line for the remote shell; so does this.
exec ip netns exec "$ns" sh -c "$*"
