#!/usr/bin/env bash
# BullMQ needs Redis at REDIS_URL (default redis://127.0.0.1:6379). If nothing
# answers on the default address, start a local, non-persistent redis-server.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379}"
hostport="${url#redis://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"
if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
  echo "redis: answering at $host:$port"
  exit 0
fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "redis: nothing answers at $url; start it there or set REDIS_URL" >&2
  exit 1
fi
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && { echo "redis: started on 127.0.0.1:$port"; exit 0; }; sleep 0.1; done
echo "redis: failed to start on 127.0.0.1:$port" >&2
exit 1
