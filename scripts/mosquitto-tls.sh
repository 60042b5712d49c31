#!/bin/sh
# mosquitto on one loopback port, for a `broker_command` (scenarios/tls.toml): with the run's
# certificates when fleetbench starts it for a TLS variant (FLEETBENCH_TLS_CA, _CERT and _KEY
# in its environment: the run's tls/ folder), plain TCP otherwise. mosquitto reads TLS settings
# only from a config file, so this writes one and then becomes mosquitto (exec: the process
# fleetbench samples, restarts and stops is the broker itself).
#
#   broker_command = ["sh", "scripts/mosquitto-tls.sh", "18883"]
set -eu
port="$1"
program=$(command -v mosquitto || echo /usr/sbin/mosquitto)
conf="${TMPDIR:-/tmp}/fleetbench-mosquitto-$port.conf"
{
  echo "listener $port 127.0.0.1"
  if [ -n "${FLEETBENCH_TLS_CERT:-}" ]; then
    echo "cafile $FLEETBENCH_TLS_CA"
    echo "certfile $FLEETBENCH_TLS_CERT"
    echo "keyfile $FLEETBENCH_TLS_KEY"
  fi
  echo "allow_anonymous true"
  echo "persistence false"
  echo "log_dest stderr"
} > "$conf"
exec "$program" -c "$conf"
