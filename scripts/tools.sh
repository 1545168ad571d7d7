#!/usr/bin/env bash
# System tools the test suite uses: promtool/prometheus (rules tests, real-Prometheus test),
# amtool/prometheus-alertmanager (Debian prometheus-alertmanager: `make alerts-check`, the
# real-Alertmanager test), docker-compose (compose file validation), chromium (report
# screenshot check, console browser test).
# Installs what is missing from Debian's packages; does nothing when all are present.
set -u
need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v amtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 \
  || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && { echo "tools: promtool, amtool, docker-compose, chromium present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tools: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's prometheus and prometheus-alertmanager packages would start daemons on :9090 and
# :9093 (the tests run their own, on free ports): a policy-rc.d that answers 101 keeps the
# package scripts from starting any service.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
status=$?
[ "$own_policy" = 1 ] && rm -f "$policy"
[ "$status" = 0 ] || { echo "tools: apt-get install ${need[*]} failed" >&2; exit 1; }
command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v amtool >/dev/null \
  && command -v prometheus-alertmanager >/dev/null && command -v docker-compose >/dev/null
