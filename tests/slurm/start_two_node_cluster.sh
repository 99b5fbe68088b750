#!/usr/bin/env bash
# Start a two-node SLURM cluster on this one machine: slurmctld here, and one slurmd per
# simulated host, each in its own network, UTS and mount namespace.
#
#   sudo bash tests/slurm/start_two_node_cluster.sh        # then SLURM_CONF=$CONF sbatch ...
#   sudo bash tests/slurm/start_two_node_cluster.sh down   # stop it, remove what it made
#
# Debian 12's slurm-wlm 22.05 is not built with --enable-multiple-slurmd, so two slurmd
# cannot share one address and port. Each node here gets a network namespace with its own
# address (10.214.0.11, .12 on a bridge, hpcdist-br0, to this host's 10.214.0.1), its own
# hostname (n1, n2: MPI then sees two hosts) and a private tmpfs at /var/tmp/hpcdist-local
# (a node-local scratch directory). The file systems are otherwise shared, like a
# cluster's home and project directories. It is a separate cluster (ClusterName
# hpcdist-two, ports 6827/6828, config in $CONF) beside the one-node one
# (start_local_cluster.sh). Safe to run again: what is up is kept.
set -euo pipefail
CONF=/etc/slurm/two-node/slurm.conf
NODES=(n1 n2)
if [ "$(id -u)" != 0 ]; then
  echo "start_two_node_cluster.sh: run as root (it makes namespaces and starts daemons)" >&2
  exit 1
fi

if [ "${1:-}" = down ]; then
  for pid in /run/slurmd-two-n1.pid /run/slurmd-two-n2.pid /run/slurmctld-two.pid; do
    [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  sleep 1
  for node in "${NODES[@]}"; do ip netns del "hpcdist-$node" 2>/dev/null || true; done
  ip link del hpcdist-br0 2>/dev/null || true
  echo "two-node SLURM cluster stopped"
  exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# --- munge (its socket is a file: every namespace reaches it)
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- the network: a bridge here, a veth into each node's namespace
if ! ip link show hpcdist-br0 >/dev/null 2>&1; then
  ip link add hpcdist-br0 type bridge
  ip addr add 10.214.0.1/24 dev hpcdist-br0
fi
ip link set hpcdist-br0 up
for i in "${!NODES[@]}"; do
  node=${NODES[$i]} addr=10.214.0.$((11 + i))
  if ! ip netns list | grep -qw "hpcdist-$node"; then
    ip netns add "hpcdist-$node"
    ip link add "hpcd-$node" type veth peer name eth0 netns "hpcdist-$node"
    ip link set "hpcd-$node" master hpcdist-br0 up
    ip -n "hpcdist-$node" addr add "$addr/24" dev eth0
    ip -n "hpcdist-$node" link set eth0 up
    ip -n "hpcdist-$node" link set lo up
  fi
done

# --- slurm.conf
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))
mkdir -p "$(dirname "$CONF")" /var/spool/slurmctld-two /var/log/slurm
for node in "${NODES[@]}"; do mkdir -p "/var/spool/slurmd-two/$node"; done
cat > "$CONF" <<CONFIG
# Written by hpcdist tests/slurm/start_two_node_cluster.sh: two nodes in namespaces.
ClusterName=hpcdist-two
SlurmctldHost=${host}(10.214.0.1)
SlurmctldPort=6827
SlurmdPort=6828
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld-two
SlurmdSpoolDir=/var/spool/slurmd-two/%n
SlurmctldPidFile=/run/slurmctld-two.pid
SlurmdPidFile=/run/slurmd-two-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld-two.log
SlurmdLogFile=/var/log/slurm/slurmd-two-%n.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName=n1 NodeAddr=10.214.0.11 NodeHostname=n1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
NodeName=n2 NodeAddr=10.214.0.12 NodeHostname=n2 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=two Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONFIG

# --- the daemons: slurmctld here, slurmd n1 / n2 in their namespaces
if ! [ -s /run/slurmctld-two.pid ] || ! kill -0 "$(cat /run/slurmctld-two.pid)" 2>/dev/null; then
  slurmctld -f "$CONF"
fi
for node in "${NODES[@]}"; do
  pid=/run/slurmd-two-$node.pid
  if ! [ -s "$pid" ] || ! kill -0 "$(cat "$pid")" 2>/dev/null; then
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup tree slurmd needs
    nsenter --net="/run/netns/hpcdist-$node" unshare --uts --mount --propagation private sh -c "
      hostname $node
      mkdir -p /var/tmp/hpcdist-local && mount -t tmpfs -o size=1g tmpfs /var/tmp/hpcdist-local
      exec slurmd -f $CONF -N $node"
  fi
done

export SLURM_CONF=$CONF
for _ in $(seq 60); do
  states=$(sinfo -h -N -o '%N=%T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
  up=$(sinfo -h -N -t idle,mixed,allocated -o '%N' 2>/dev/null | sort -u | wc -l || echo 0)
  [ "$up" -ge 2 ] && break
  for node in "${NODES[@]}"; do
    case "$states" in *"$node=down"*|*"$node=drain"*)
      scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;; esac
  done
  sleep 1
done
sinfo
if [ "$up" -ge 2 ]; then
  echo "two-node SLURM cluster is up: n1, n2 (SLURM_CONF=$CONF)"
else
  echo "the two SLURM nodes did not come up ($states); see /var/log/slurm/*-two*" >&2
  exit 1
fi
