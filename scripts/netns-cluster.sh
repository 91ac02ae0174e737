#!/usr/bin/env bash
# A cluster of "hosts" on this machine: network namespaces joined by a bridge,
# addresses in 10.77.0.0/24 (a test subnet that exists only on these virtual
# links), mpirun started inside the first host and reaching the others through
# scripts/netns-agent.sh instead of ssh. TCP between hosts, shared memory
# inside one. Touches only what it creates: namespaces tandem-br and
# tandem-h1…N and the veth pairs inside them.
#
#   scripts/netns-cluster.sh up N [--gbit G]      create N hosts (--gbit: each host's link
#                                                 sends at most G Gbit/s, a tc token bucket)
#   scripts/netns-cluster.sh run N [--slots S] [--timeout T] [--gbit G] -- <tandem args>
#                                                 train across N hosts × S ranks, print
#                                                 the bytes each host's link carried
#                                                 (creates and removes the cluster itself
#                                                 unless one is already up)
#   scripts/netns-cluster.sh down                 remove everything
#   scripts/netns-cluster.sh status
#
# The binary is $TANDEM_BIN, else .build/release/tandem. Needs root and `ip netns`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
subnet=10.77.0.0/24
bridge_ns=tandem-br

die() { echo "netns-cluster: $*" >&2; exit 2; }

preflight() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces need CAP_NET_ADMIN)"
  command -v ip >/dev/null 2>&1 || die "the 'ip' command (iproute2) is not installed"
  ip netns list >/dev/null 2>&1 || die "'ip netns' is not available here"
  command -v unshare >/dev/null 2>&1 || die "'unshare' (util-linux) is not installed"
}

hosts_up() { ip netns list 2>/dev/null | awk '{print $1}' | grep -c '^tandem-h[0-9]' || true; }

up() {
  local n="$1" gbit="${2:-}"
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N must be 1…200"
  [ -z "$gbit" ] || [[ "$gbit" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--gbit must be a number of Gbit/s"
  [ -z "$gbit" ] || command -v tc >/dev/null 2>&1 || die "--gbit needs tc (iproute2)"
  [ "$(hosts_up)" = 0 ] || die "a cluster is already up (run '$0 down' first)"
  ip netns add $bridge_ns
  ip -n $bridge_ns link add br0 type bridge
  ip -n $bridge_ns link set br0 up
  ip -n $bridge_ns link set lo up
  for i in $(seq 1 "$n"); do
    local ns=tandem-h$i
    ip netns add $ns
    # Created directly inside the namespaces: nothing appears in the root namespace.
    ip -n $bridge_ns link add tvh$i type veth peer name eth0 netns $ns
    ip -n $bridge_ns link set tvh$i master br0 up
    ip -n $ns addr add 10.77.0.$i/24 dev eth0
    ip -n $ns link set eth0 up
    ip -n $ns link set lo up
    if [ -n "$gbit" ]; then
      # A token bucket on what the host sends. It holds 0.5 ms of the rate (at least 64 KB, one segment
      # as TCP hands it over): more would let a step's first half-megabyte through at the veth's speed.
      local burst; burst=$(awk -v g="$gbit" 'BEGIN { b = g * 1e9 / 8 * 0.0005; print int(b < 65536 ? 65536 : b) }')
      ip netns exec $ns tc qdisc add dev eth0 root tbf rate "${gbit}gbit" burst "$burst" latency 200ms
    fi
  done
  echo "netns-cluster: $n host(s) up: $(seq -s ' ' -f 'tandem-h%g' 1 "$n") on $subnet${gbit:+, $gbit Gbit/s each}"
}

down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^tandem-(h[0-9]+|br)$' || true); do
    # End anything still running in the namespace, then remove it (its veths go with it).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

# Bytes carried by each host's link (tx + rx, seen from the bridge side).
link_bytes() {
  local n="$1" i
  for i in $(seq 1 "$n"); do
    local rx tx
    rx=$(ip netns exec $bridge_ns cat /sys/class/net/tvh$i/statistics/rx_bytes)
    tx=$(ip netns exec $bridge_ns cat /sys/class/net/tvh$i/statistics/tx_bytes)
    echo "tandem-h$i $rx $tx"
  done
}

run() {
  local n="$1"; shift
  local slots=1 timeout=600 gbit=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --slots) slots="$2"; shift 2 ;;
      --timeout) timeout="$2"; shift 2 ;;
      --gbit) gbit="$2"; shift 2 ;;
      --) shift; break ;;
      *) die "run: unknown option '$1'" ;;
    esac
  done
  local bin="${TANDEM_BIN:-$here/.build/release/tandem}"
  [ -x "$bin" ] || die "$bin not found; run 'swift build -c release --static-swift-stdlib' first (or set TANDEM_BIN)"
  case "${1:-}" in train|evaluate|predict|bench) ;; *) set -- train "$@" ;; esac

  local created=0
  if [ "$(hosts_up)" = 0 ]; then
    created=1
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up "$n" "$gbit" >/dev/null
  elif [ "$(hosts_up)" -lt "$n" ]; then
    die "only $(hosts_up) host(s) are up, $n needed"
  fi
  local hostfile; hostfile=$(mktemp /tmp/tandem-hostfile.XXXXXX)
  for i in $(seq 1 "$n"); do echo "tandem-h$i slots=$slots"; done > "$hostfile"
  local before; before=$(link_bytes "$n")
  local status=0
  # mpirun must run inside the first host: from the root namespace the remote
  # daemons could not connect back. --bind-to none: every "host" shares this
  # machine's cores, and each daemon would otherwise pin its first rank to core 0.
  # The environment reaches the ranks only via -x.
  ip netns exec tandem-h1 unshare --uts sh -c 'hostname tandem-h1; exec "$@"' sh \
    mpirun --allow-run-as-root --hostfile "$hostfile" -np $((n * slots)) --timeout "$timeout" \
      --mca plm_rsh_agent "$here/scripts/netns-agent.sh" \
      --mca btl self,vader,tcp --mca btl_tcp_if_include $subnet --mca oob_tcp_if_include $subnet \
      --bind-to none --mca mpi_yield_when_idle 1 -x OPENBLAS_NUM_THREADS=1 -x PATH ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} \
      ${TANDEM_TEST_KILL:+-x TANDEM_TEST_KILL} ${TANDEM_TEST_STEP_DELAY_MS:+-x TANDEM_TEST_STEP_DELAY_MS} \
      "$bin" "$@" || status=$?
  rm -f "$hostfile"
  local after; after=$(link_bytes "$n")
  echo "netns-cluster: bytes on each host's link during the run (rx + tx):" >&2
  paste <(echo "$before") <(echo "$after") | awk '{printf "  %s %.0f bytes\n", $1, ($5 - $2) + ($6 - $3)}' >&2
  return $status
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up) preflight
    [ "${2:-}" != --gbit ] || set -- "$1" "${3:?usage: up N --gbit G}"
    up "${1:?usage: up N [--gbit G]}" "${2:-}" ;;
  down) preflight; down; echo "netns-cluster: down" ;;
  run) preflight; run "${1:?usage: run N [--slots S] -- <tandem args>}" "${@:2}" ;;
  status) ip netns list 2>/dev/null | grep -E '^tandem-' || echo "netns-cluster: no cluster" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
