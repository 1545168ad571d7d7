#!/usr/bin/env bash
# Start the local PostgreSQL and Redis servers the paper/live tests talk to, if they are down.
# Idempotent: does nothing when both already answer.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open 5432; then
  echo "postgres: up on 127.0.0.1:5432"
elif [ -d /etc/postgresql ]; then
  echo "postgres: down, starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
else
  echo "postgres: not installed here; tests that need it will be skipped" >&2
fi

if port_open 6379; then
  echo "redis: up on 127.0.0.1:6379"
elif command -v redis-server >/dev/null 2>&1; then
  echo "redis: down, starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
else
  echo "redis: not installed here; tests that need it will be skipped" >&2
fi

for _ in $(seq 1 50); do
  { port_open 5432 || [ ! -d /etc/postgresql ]; } && { port_open 6379 || ! command -v redis-server >/dev/null; } && exit 0
  sleep 0.2
done
echo "services: still not answering after 10 s" >&2
exit 0
