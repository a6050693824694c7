#!/usr/bin/env bash
# Prints the path of a Java >= 17 runtime (DynamoDB Local 3.x needs 17+), installing one with
# apt-get when none is found and we are root (CI is). Used by `make tools` and ddb-local.sh.
#   infra/scripts/java.sh            # ensure + print path
#   infra/scripts/java.sh --check    # print path or exit 1, never install
set -euo pipefail

MIN_MAJOR=17

log() { echo "java.sh: $*" >&2; }

java_major() {
    # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' (or "1.8.0_392").
    local version
    version="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
    case "$version" in
        1.*) echo "${version#1.}" | cut -d. -f1 ;;
        "") echo 0 ;;
        *) echo "$version" | cut -d. -f1 | cut -d- -f1 ;;
    esac
}

find_java() {
    local candidate major
    for candidate in ${RIPPLE_JAVA:-} "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        major="$(java_major "$candidate")"
        if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= MIN_MAJOR )); then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if found="$(find_java)"; then
    echo "$found"
    exit 0
fi

if [[ "${1:-}" == "--check" ]]; then
    log "no Java >= $MIN_MAJOR found (run 'make tools')"
    exit 1
fi

if [[ "$(id -u)" != 0 ]]; then
    log "no Java >= $MIN_MAJOR found and not root: install a JRE >= $MIN_MAJOR (e.g. 'sudo apt-get install -y openjdk-17-jre-headless') or set RIPPLE_JAVA=/path/to/java"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "no Java >= $MIN_MAJOR found and no apt-get: install a JRE >= $MIN_MAJOR or set RIPPLE_JAVA"
    exit 1
fi

log "no Java >= $MIN_MAJOR found; installing one with apt-get"
export DEBIAN_FRONTEND=noninteractive
# Slim Debian images lack this directory and the JRE's postinst fails without it.
mkdir -p /usr/share/man/man1
apt-get update -qq >&2
# Debian 12 ships openjdk-17; newer releases dropped it for 21; default-jre-headless is the
# last resort (it is >= 17 on every supported Debian).
for package in openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless; do
    if [[ -n "$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)"')" ]]; then
        log "apt-get install -y --no-install-recommends $package"
        apt-get install -y -qq --no-install-recommends "$package" >&2
        break
    fi
done

if found="$(find_java)"; then
    echo "$found"
    exit 0
fi
log "installed a JRE but still found no Java >= $MIN_MAJOR"
exit 1
