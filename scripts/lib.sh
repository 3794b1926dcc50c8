# Shared by scripts/demo and scripts/test: a virtual environment and the local services, installed on demand.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_venv EXTRA: creates .venv and installs staybook (editable) with the extra, again when pyproject changes.
ensure_venv() {
  local extra="$1"
  if ! "$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    apt_install python3 python3-venv python3-dev
    PYTHON_BIN=python3
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in .venv"
    "$PYTHON_BIN" -m venv "$VENV" || { apt_install python3-venv; "$PYTHON_BIN" -m venv "$VENV"; }
  fi
  local stamp="$VENV/.staybook-$extra.stamp"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing staybook[$extra] into .venv"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extra]"
    echo "$want" > "$stamp"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}

# ensure_services: PostgreSQL, Redis and NATS JetStream on their default ports, installed and started if needed.
ensure_services() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || {
      apt_install postgresql
      local conf
      conf="$(ls -d /etc/postgresql/*/main | head -1)"
      # Local test server: trust connections from this machine only.
      echo "host all all 127.0.0.1/32 trust" | as_root tee -a "$conf/pg_hba.conf" >/dev/null
    }
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    wait_port 5432 || log "PostgreSQL did not come up"
    as_root su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" \
      2>/dev/null || true
  fi
  if ! port_open 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 || log "Redis did not come up"
  fi
  if ! port_open 4222; then
    command -v nats-server >/dev/null || apt_install nats-server
    log "starting NATS JetStream"
    as_root mkdir -p /var/lib/nats-server
    as_root start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_port 4222 || log "NATS did not come up"
  fi
}

# ensure_checkov_venv: checkov (deploy/requirements-checkov.txt) in .venv-checkov, again when the pin changes.
ensure_checkov_venv() {
  local venv="$ROOT/.venv-checkov" want
  want="$(sha256sum "$ROOT/deploy/requirements-checkov.txt" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/checkov" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]; then
    log "installing checkov into .venv-checkov"
    "$PYTHON_BIN" -m venv "$venv" || { apt_install python3-venv; "$PYTHON_BIN" -m venv "$venv"; }
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -r "$ROOT/deploy/requirements-checkov.txt"
    echo "$want" > "$venv/.stamp"
  fi
}
