#!/usr/bin/env bash
# Ripple deployment smoke test (docs/deploy.md, "Smoke test").
#
#   scripts/smoke.sh --stack NAME [--region REGION]     # a deployed stack (reads its outputs)
#   scripts/smoke.sh --local [--http-url URL] [--ws-url URL]   # a running `make dev`
#
# Registers two fresh users A and B, B follows A, B opens a WebSocket (subprotocol
# `ripple.v1, <token>`), A posts, and B must receive `post_created` for that post within
# --timeout seconds. Exit status 0 on success; on any failure one `smoke: FAIL ...` line and a
# non-zero status. Cleanup (always, unless --keep): the post is deleted, B unfollows A, both
# sessions are logged out. The two users themselves stay (the API has no account deletion);
# their usernames start with `smoke_` (docs/deploy.md, "Teardown").
#
# Needs bash, curl and the repository's .venv (`make tools`: Python + websockets) for the
# socket part (scripts/smoke_ws.py). Tokens are never printed and never put on a command line.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK=""
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
LOCAL=0
HTTP_URL=""
WS_URL=""
TIMEOUT=10
PYTHON="${ROOT}/.venv/bin/python"
KEEP=0
LOCAL_HTTP_DEFAULT="http://127.0.0.1:3000"
LOCAL_WS_DEFAULT="ws://127.0.0.1:3001"

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options:
  --stack NAME       CloudFormation stack to test (HttpApiUrl / WebSocketUrl outputs)
  --region REGION    its Region (default: \$AWS_REGION / the AWS CLI's)
  --local            test a local gateway (make dev): ${LOCAL_HTTP_DEFAULT} and ${LOCAL_WS_DEFAULT}
  --http-url URL     REST base URL (overrides the stack output / local default)
  --ws-url URL       WebSocket URL (overrides the stack output / local default)
  --timeout SECONDS  how long B waits for the event, and each HTTP call's limit (default ${TIMEOUT})
  --python PATH      Python with the websockets package (default .venv/bin/python)
  --keep             skip the cleanup (leave the post, the follow and the sessions)
EOF
}

die() { echo "smoke: FAIL $*" >&2; exit 1; }
step() { echo "smoke: $*"; }

while (($#)); do
  case "$1" in
    --stack) STACK="${2:?--stack needs a name}"; shift 2 ;;
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --local) LOCAL=1; shift ;;
    --http-url) HTTP_URL="${2:?--http-url needs a URL}"; shift 2 ;;
    --ws-url) WS_URL="${2:?--ws-url needs a URL}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ "$TIMEOUT" =~ ^[0-9]+$ && "$TIMEOUT" -ge 1 ]] || die "--timeout must be a whole number of seconds >= 1"
command -v curl >/dev/null || die "curl is not installed"
[[ -x "$PYTHON" ]] || die "$PYTHON not found; run 'make tools' (installs websockets into .venv) or pass --python"
"$PYTHON" -c 'import websockets' 2>/dev/null || die "$PYTHON has no websockets package; run 'make tools'"

# ---- where to test ------------------------------------------------------------------------------

stack_output() {
  local key="$1" value
  value="$(aws cloudformation describe-stacks --stack-name "$STACK" ${REGION:+--region "$REGION"} \
    --query "Stacks[0].Outputs[?OutputKey=='${key}'].OutputValue" --output text)" \
    || die "cannot read the outputs of stack '$STACK' (aws cloudformation describe-stacks failed)"
  [[ -n "$value" && "$value" != "None" ]] || die "stack '$STACK' has no output $key"
  printf '%s' "$value"
}

if ((LOCAL)); then
  [[ -z "$STACK" ]] || die "--local and --stack exclude each other"
  HTTP_URL="${HTTP_URL:-$LOCAL_HTTP_DEFAULT}"
  WS_URL="${WS_URL:-$LOCAL_WS_DEFAULT}"
elif [[ -n "$STACK" ]]; then
  if [[ -z "$HTTP_URL" || -z "$WS_URL" ]]; then
    command -v aws >/dev/null || die "the AWS CLI is needed to read the stack outputs (or pass --http-url and --ws-url)"
  fi
  HTTP_URL="${HTTP_URL:-$(stack_output HttpApiUrl)}"
  WS_URL="${WS_URL:-$(stack_output WebSocketUrl)}"
elif [[ -z "$HTTP_URL" || -z "$WS_URL" ]]; then
  usage >&2
  die "say what to test: --stack NAME, --local, or both --http-url and --ws-url"
fi
HTTP_URL="${HTTP_URL%/}"
step "REST $HTTP_URL, WebSocket $WS_URL"

# ---- HTTP helpers -------------------------------------------------------------------------------

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/ripple-smoke.XXXXXX")"
STATUS=""
BODY=""

# api METHOD PATH [JSON_BODY] [ACCESS_TOKEN] -> sets STATUS and BODY. The token goes to curl
# through a header file, so it never appears in the process list.
api() {
  local method="$1" path="$2" data="${3:-}" token="${4:-}"
  local args=(--silent --show-error --max-time "$TIMEOUT" --request "$method"
    --output "$SCRATCH/body" --write-out '%{http_code}' --header 'accept: application/json')
  if [[ -n "$token" ]]; then
    printf 'authorization: Bearer %s\n' "$token" >"$SCRATCH/auth"
    args+=(--header "@$SCRATCH/auth")
  fi
  if [[ -n "$data" ]]; then
    printf '%s' "$data" >"$SCRATCH/request"
    args+=(--header 'content-type: application/json' --data-binary "@$SCRATCH/request")
  fi
  STATUS="$(curl "${args[@]}" "${HTTP_URL}${path}")" || STATUS="000"
  BODY="$(cat "$SCRATCH/body" 2>/dev/null || true)"
  rm -f "$SCRATCH/auth" "$SCRATCH/request"
}

# expect STATUS_WANTED WHAT: dies with the response's error (never a token) on another status.
expect() {
  local wanted="$1" what="$2"
  [[ "$STATUS" == "$wanted" ]] && return 0
  if [[ "$STATUS" == "000" ]]; then
    die "$what: no HTTP response from $HTTP_URL (is it running / reachable?)"
  fi
  local error
  error="$(json_field "$BODY" error.code 2>/dev/null || true) $(json_field "$BODY" error.message 2>/dev/null || true)"
  die "$what: HTTP $STATUS, expected $wanted${error:+ ($error)}"
}

# json_field JSON DOTTED.PATH -> the value (strings bare), non-zero if absent.
json_field() {
  "$PYTHON" -c '
import json, sys
value = json.loads(sys.argv[1])
for key in sys.argv[2].split("."):
    value = value[key]
print(value if isinstance(value, str) else json.dumps(value))
' "$1" "$2"
}

json_string() { "$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

# ---- cleanup ------------------------------------------------------------------------------------

WS_PID=""
TOKEN_A="" TOKEN_B="" REFRESH_A="" REFRESH_B="" USER_A="" POST_ID="" FOLLOWING=0

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$WS_PID" ]] && kill -0 "$WS_PID" 2>/dev/null; then
    kill "$WS_PID" 2>/dev/null || true
    wait "$WS_PID" 2>/dev/null || true
  fi
  if ((KEEP)); then
    step "--keep: leaving post ${POST_ID:-none}, the follow and both sessions"
  else
    # Best effort, in reverse order; a failure here is reported but does not change the result.
    local problems=() done=()
    if [[ -n "$POST_ID" ]]; then
      api DELETE "/posts/$POST_ID" "" "$TOKEN_A"
      if [[ "$STATUS" == 204 || "$STATUS" == 404 ]]; then done+=("post deleted"); else problems+=("delete post: HTTP $STATUS"); fi
    fi
    if ((FOLLOWING)); then
      api DELETE "/users/$USER_A/follow" "" "$TOKEN_B"
      if [[ "$STATUS" =~ ^2 ]]; then done+=("unfollowed"); else problems+=("unfollow: HTTP $STATUS"); fi
    fi
    local who token refresh
    for who in A B; do
      if [[ "$who" == A ]]; then token="$TOKEN_A" refresh="$REFRESH_A"; else token="$TOKEN_B" refresh="$REFRESH_B"; fi
      [[ -n "$token" && -n "$refresh" ]] || continue
      api POST "/auth/logout?all=true" "{\"refresh_token\":$(json_string "$refresh")}" "$token"
      if [[ "$STATUS" == 204 ]]; then done+=("$who logged out"); else problems+=("logout $who: HTTP $STATUS"); fi
    done
    if ((${#problems[@]})); then
      echo "smoke: cleanup incomplete: ${problems[*]}" >&2
    fi
    if ((${#done[@]})); then
      local joined
      joined="$(IFS=,; echo "${done[*]}")"
      step "cleanup: ${joined//,/, } (users ${NAME_A:-?} and ${NAME_B:-?} remain: the API has no account deletion)"
    fi
  fi
  rm -rf "$SCRATCH"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the test -----------------------------------------------------------------------------------

api GET /health
expect 200 "GET /health"

# Unique, valid usernames (3-30 of [a-z0-9_]): smoke_<epoch>_<random>_a / _b.
SUFFIX="$(date +%s)_$(( RANDOM % 10000 ))"
NAME_A="smoke_${SUFFIX}_a"
NAME_B="smoke_${SUFFIX}_b"
PASSWORD="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')"

register() {
  local name="$1"
  api POST /auth/register "{\"username\":\"$name\",\"password\":$(json_string "$PASSWORD"),\"display_name\":\"Smoke test $name\"}"
  expect 201 "register $name"
}

register "$NAME_A"
USER_A="$(json_field "$BODY" user.id)" || die "register $NAME_A: no user.id in the response"
TOKEN_A="$(json_field "$BODY" access_token)" || die "register $NAME_A: no access_token"
REFRESH_A="$(json_field "$BODY" refresh_token)" || die "register $NAME_A: no refresh_token"
register "$NAME_B"
TOKEN_B="$(json_field "$BODY" access_token)" || die "register $NAME_B: no access_token"
REFRESH_B="$(json_field "$BODY" refresh_token)" || die "register $NAME_B: no refresh_token"
step "registered $NAME_A and $NAME_B"

api PUT "/users/$USER_A/follow" "" "$TOKEN_B"
[[ "$STATUS" == 200 || "$STATUS" == 201 ]] || expect 200 "B follows A"
FOLLOWING=1
step "B follows A"

# B's socket: a background process speaking the line protocol of scripts/smoke_ws.py over two
# FIFOs (the token reaches it through its environment only).
mkfifo "$SCRATCH/ws.in" "$SCRATCH/ws.out"
SMOKE_WS_TOKEN="$TOKEN_B" "$PYTHON" "$ROOT/scripts/smoke_ws.py" "$WS_URL" --timeout "$TIMEOUT" \
  <"$SCRATCH/ws.in" >"$SCRATCH/ws.out" 2>"$SCRATCH/ws.err" &
WS_PID=$!
exec {WS_IN}>"$SCRATCH/ws.in" {WS_OUT}<"$SCRATCH/ws.out"
ws_failure() { sed 's/^smoke_ws: //' "$SCRATCH/ws.err" 2>/dev/null | tail -n 1; }

LINE=""
read -r -t "$(( TIMEOUT + 5 ))" LINE <&"$WS_OUT" || true
[[ "$LINE" == connected ]] || die "B's WebSocket: $(ws_failure || true)"
step "B connected (subprotocol ripple.v1)"

api POST /posts "{\"text\":\"Ripple smoke test $SUFFIX\"}" "$TOKEN_A"
SENT_AT="$(date +%s.%N)"
expect 201 "A posts"
POST_ID="$(json_field "$BODY" id)" || die "A posts: no id in the response"
step "A posted $POST_ID"

printf '%s %s\n' "$POST_ID" "$SENT_AT" >&"$WS_IN"
LINE=""
read -r -t "$(( TIMEOUT + 5 ))" LINE <&"$WS_OUT" || true
if [[ "$LINE" != received\ * ]]; then
  die "B did not receive post_created: $(ws_failure || true)"
fi
read -r _ EVENT_ID LATENCY_MS <<<"$LINE"
wait "$WS_PID" 2>/dev/null || true
WS_PID=""
step "PASS: B received post_created ($EVENT_ID) ${LATENCY_MS} ms after A's REST response"
