#!/usr/bin/env bash
# The local stack, on 127.0.0.1 only: `deploy/stack.sh up|down|status` (what `make up` / `make down` run).
#   prefect  Prefect server and UI (SQLite in .prefect/)       orchestrate.prefect_port
#   flows    the served deployments (deploy/serve_flows.py)
#   watch    `mapwise watch` on orchestrate.incoming
#   mlflow   the MLflow UI over tracking.uri's SQLite file     orchestrate.mlflow_port
#   model    `mapwise serve`, following the champion           serve.port
# Each runs in its own process group; its PID and log are in .mapwise/stack/. `down` stops exactly those.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN=.mapwise/stack
BIN=${BIN:-$ROOT/.venv/bin}
export PATH="$BIN:$PATH" PREFECT_HOME="$ROOT/.prefect" DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \
       DVC_NO_ANALYTICS=1
NAMES=(model mlflow watch flows prefect)  # stop order; start order is the reverse

read -r PREFECT_PORT MLFLOW_PORT MODEL_PORT TRACKING < <(python - <<'EOF'
from mapwise.params import load_params
from mapwise.tracking import tracking_uri
p = load_params()
print(p.orchestrate.prefect_port, p.orchestrate.mlflow_port, p.serve.port, tracking_uri(p.tracking))
EOF
)
export PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api"

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {  # name, command...
  local name=$1; shift
  if alive "$name"; then echo "  $name: already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # name, url, seconds
  for _ in $(seq "$3"); do
    curl -fs "$2" >/dev/null 2>&1 && return 0
    alive "$1" || { echo "$1 exited; see $RUN/$1.log:"; tail -5 "$RUN/$1.log"; exit 1; }
    sleep 1
  done
  echo "$1 did not answer at $2 within $3 s; see $RUN/$1.log"; exit 1
}

up() {
  mkdir -p "$RUN"
  echo "starting the mapwise stack (logs: $RUN/*.log)"
  start prefect prefect server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_for prefect "$PREFECT_API_URL/health" 120
  start flows python deploy/serve_flows.py
  start watch mapwise watch
  start mlflow mlflow ui --backend-store-uri "$TRACKING" --host 127.0.0.1 --port "$MLFLOW_PORT"
  start model mapwise serve  # listens at once; 503 with the reason until the key and a champion exist
  wait_for mlflow "http://127.0.0.1:$MLFLOW_PORT/health" 120
  wait_for model "http://127.0.0.1:$MODEL_PORT/health" 120
  sleep 3
  for name in flows watch model; do
    alive "$name" || { echo "$name exited; see $RUN/$name.log:"; tail -5 "$RUN/$name.log"; exit 1; }
  done
  cat <<EOF
up:
  Prefect UI      http://127.0.0.1:$PREFECT_PORT   (deployments: pipeline/manual, pipeline/scheduled, retrain/on-arrival)
  MLflow UI       http://127.0.0.1:$MLFLOW_PORT
  model service   http://127.0.0.1:$MODEL_PORT/docs   (503, saying why, until the key and a champion exist)
  drop folder     $(python -c "from mapwise.params import load_params; print(load_params().orchestrate.incoming)")/<source>/<file>
stop with: make down
EOF
}

down() {
  for name in "${NAMES[@]}"; do
    if alive "$name"; then
      kill -TERM -- "-$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 20); do alive "$name" || break; sleep 0.5; done
      alive "$name" && kill -KILL -- "-$(cat "$RUN/$name.pid")" 2>/dev/null || true
      echo "  $name: stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  for name in "${NAMES[@]}"; do
    if alive "$name"; then echo "  $name: running (pid $(cat "$RUN/$name.pid"))"; else echo "  $name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status"; exit 2 ;;
esac
