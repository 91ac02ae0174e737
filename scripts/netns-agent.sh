#!/usr/bin/env bash
# mpirun's remote launcher for the namespace cluster, used instead of ssh
# (--mca plm_rsh_agent). mpirun calls it as ssh: `AGENT [options] HOST words…`
# with shell-quoted words. HOST is a namespace of scripts/netns-cluster.sh; the
# words run there under their own UTS namespace, so each host has its own name.
set -eu
while [ $# -gt 0 ]; do
  case "$1" in
    -x|-T|-q|-n|-t|-tt) shift ;;
    -o|-l|-p|-i) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
case "$host" in
  tandem-h[0-9]*) ns="$host" ;;
  10.77.0.*) ns="tandem-h${host##*.}" ;;
  *) echo "netns-agent: unknown host '$host' (expected tandem-hN or 10.77.0.N)" >&2; exit 255 ;;
esac
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
