#!/usr/bin/env bash
# A multi-host test bed on one machine: N network namespaces ("hosts") on a bridge,
# each joined by a veth link rate-limited with tc tbf, and MPICH's hydra starting
# its proxies in them (tests/hosts/netns_ssh.sh stands in for ssh).
#
#   bed.sh check                     exit 0 when namespaces can be made here
#   bed.sh up N RATE                 make hosts 0..N-1 (RATE: tc syntax, e.g. 5gbit)
#   bed.sh run PER_HOST CMD [ARG..]  mpiexec -n N*PER_HOST CMD across the hosts
#   bed.sh down                      remove everything `up` made (always safe)
#
# $HPCDIST_BED names the bed (default hpcdbed: namespaces hpcdbed-sw, hpcdbed-h0..);
# $HPCDIST_BED_NET is its /24 (default 10.213.0: host i is 10.213.0.(i+1)). Nothing
# is changed outside the bed's namespaces, and all traffic stays inside them.
set -euo pipefail

BED=${HPCDIST_BED:-hpcdbed}
NET=${HPCDIST_BED_NET:-10.213.0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${TMPDIR:-/tmp}/$BED.hosts # one line per host: "address namespace"

die() { echo "bed.sh: $*" >&2; exit 2; }

hosts() { ip netns list 2>/dev/null | awk -v p="$BED-h" 'index($1, p) == 1 {print $1}' | sort -V; }

check() {
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  command -v tc >/dev/null || die "tc (iproute2) is not installed"
  local probe="$BED-probe$$"
  ip netns add "$probe" 2>/dev/null || die "cannot create network namespaces here (needs root)"
  local ok=0
  ip -n "$probe" link add t0 type veth peer name t1 2>/dev/null \
    && tc -n "$probe" qdisc add dev t0 root tbf rate 1gbit burst 256kb latency 50ms 2>/dev/null \
    || ok=1
  ip netns del "$probe"
  [ "$ok" = 0 ] || die "cannot make rate-limited veth links (veth or sch_tbf missing)"
}

# The bucket: 1 ms of traffic, 64 KiB at least (high-resolution timers keep the rate);
# a larger one lets short bursts (such as the exchange's link probe) pass at veth speed.
burst_for() {
  local rate=$1 num unit bits
  num=${rate%%[a-zA-Z]*}
  unit=${rate#"$num"}
  case "${unit,,}" in
    gbit) bits=$((num * 1000000000)) ;;
    mbit) bits=$((num * 1000000)) ;;
    kbit) bits=$((num * 1000)) ;;
    *) die "link rate '$rate': expected a number with gbit, mbit or kbit (e.g. 5gbit)" ;;
  esac
  local b=$((bits / 8 / 1000))
  echo $((b > 65536 ? b : 65536))
}

up() {
  local n=${1:?usage: bed.sh up N RATE} rate=${2:?usage: bed.sh up N RATE} burst
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "N must be 1..200, got '$n'"
  burst=$(burst_for "$rate")
  [ -z "$(hosts)" ] || die "bed '$BED' is already up (bed.sh down first)"
  trap 'down' ERR
  ip netns add "$BED-sw"
  ip -n "$BED-sw" link add br0 type bridge
  ip -n "$BED-sw" link set br0 up
  : >"$STATE"
  for ((i = 0; i < n; i++)); do
    local ns="$BED-h$i" addr="$NET.$((i + 1))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$BED-sw"
    ip -n "$BED-sw" link set "p$i" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Both directions are limited: host -> bridge on eth0, bridge -> host on p$i.
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
    tc -n "$BED-sw" qdisc add dev "p$i" root tbf rate "$rate" burst "$burst" latency 50ms
    echo "$addr $ns" >>"$STATE"
  done
  trap - ERR
  # Every host must reach host 0 (where mpiexec runs) before anyone relies on it.
  if command -v ping >/dev/null; then
    for ((i = 1; i < n; i++)); do
      ip netns exec "$BED-h$i" ping -c 1 -W 2 "$NET.1" >/dev/null 2>&1 \
        || { down; die "host $i cannot reach $NET.1 over the bridge"; }
    done
  fi
}

down() {
  local ns
  for ns in $(hosts) "$BED-sw"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "$STATE"
}

run() {
  local per=${1:?usage: bed.sh run PER_HOST CMD...}
  shift
  [ -s "$STATE" ] || die "bed '$BED' is not up (bed.sh up N RATE first)"
  local list="" n=0 addr ns
  while read -r addr ns; do
    list+="${list:+,}$addr:$per"
    n=$((n + per))
  done <"$STATE"
  local mpiexec=${HPCDIST_MPIEXEC:-$(command -v mpiexec)}
  # -iface eth0: hydra and MPICH use the bed's links; UCX_TLS tcp,self: without it UCX
  # sees all ranks on one machine and moves the bytes through shared memory instead.
  export HPCDIST_BED_STATE="$STATE"
  # Started from inside an MPI job (a test under mpiexec): its process-manager variables
  # (HYDI_CONTROL_FD, PMI_FD, ...) would reach the proxies, which ssh would never pass.
  local v
  for v in $(compgen -e); do
    case "$v" in HYDI_* | HYDRA_* | PMI_* | PMIX_* | MPI_LOCAL*) unset "$v" ;; esac
  done
  exec ip netns exec "$BED-h0" "$mpiexec" -launcher ssh -launcher-exec "$HERE/netns_ssh.sh" \
    -iface eth0 -hosts "$list" -n "$n" -genv UCX_TLS tcp,self -genv UCX_NET_DEVICES eth0 "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
  check | up | down | run) "$cmd" "$@" ;;
  *) die "usage: bed.sh check | up N RATE | run PER_HOST CMD... | down" ;;
esac
