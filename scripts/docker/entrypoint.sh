#!/bin/sh
# Entry point of the fedchain image: a role name, or any `fedchain` arguments.
#
#   init             generate the testnet into $FEDCHAIN_TESTNET_DIR once (kept on restart)
#   validator I      run validator I from $FEDCHAIN_TESTNET_DIR/nodeI
#   client [ROLE]    claim a free client home (ROLE honest|attacker, default honest) and run it
#   anything else    `fedchain ARGS...`
#
# Clients are a scalable compose service, so replicas cannot be told an index: each claims a
# home by an atomic mkdir in the shared volume and keeps the claim fresh; a claim untouched for
# CLAIM_STALE_S (its container is gone) may be taken over.  A restarted container finds its own
# claim again by its hostname.
set -eu

dir="${FEDCHAIN_TESTNET_DIR:-/testnet}"
CLAIM_STALE_S=60

log() { printf '{"event":"docker_entrypoint","role":"%s","msg":"%s"}\n' "$1" "$2"; }

wait_for() {
    # The init job may still be writing; wait up to 120 s for the file that marks it done.
    n=0
    until [ -f "$1" ]; do
        n=$((n + 1))
        if [ "$n" -gt 240 ]; then log "$2" "gave up waiting for $1"; exit 1; fi
        sleep 0.5
    done
}

case "${1:-}" in
init)
    if [ -f "$dir/.initialized" ]; then
        log init "testnet already generated in $dir; keeping it (docker compose down -v resets)"
        exit 0
    fi
    fedchain testnet --docker --out "$dir" \
        --validators "${FEDCHAIN_VALIDATORS:-4}" \
        --clients "${FEDCHAIN_CLIENTS:-8}" \
        --attackers "${FEDCHAIN_ATTACKERS:-1}" \
        --attack "${FEDCHAIN_ATTACK:-sign_flip}" \
        --chain-id "${FEDCHAIN_CHAIN_ID:-fedchain-docker}"
    touch "$dir/.initialized"
    ;;
validator)
    i="${2:?usage: validator INDEX}"
    wait_for "$dir/.initialized" "validator$i"
    exec fedchain start --home "$dir/node$i"
    ;;
client)
    want="${2:-honest}"
    me="$(hostname)"
    wait_for "$dir/.initialized" client
    home=""
    # Pass 1: our own claim (container restarted); pass 2: a free home; pass 3: a stale one.
    for pass in own free stale; do
        for c in "$dir"/client*; do
            [ -f "$c/client.toml" ] || continue
            if grep -q '^attack = ""' "$c/client.toml"; then role=honest; else role=attacker; fi
            [ "$role" = "$want" ] || continue
            case "$pass" in
            own) [ "$(cat "$c/.claim/host" 2>/dev/null)" = "$me" ] && home="$c" ;;
            free) mkdir "$c/.claim" 2>/dev/null && home="$c" ;;
            stale)
                if [ -z "$(find "$c/.claim/host" -newermt "$CLAIM_STALE_S seconds ago" 2>/dev/null)" ]; then
                    home="$c"
                fi
                ;;
            esac
            [ -n "$home" ] && break
        done
        [ -n "$home" ] && break
    done
    if [ -z "$home" ]; then
        log client "no free $want client home in $dir (raise FEDCHAIN_CLIENTS and reset)"
        exit 1
    fi
    mkdir -p "$home/.claim"
    echo "$me" >"$home/.claim/host"
    log client "host $me runs $home as $want"
    # Keep the claim fresh while this container lives (the loop dies with the container).
    (while sleep 10; do touch "$home/.claim/host"; done) &
    exec fedchain client run --home "$home" \
        --rounds "${FEDCHAIN_CLIENT_ROUNDS:-1000000}" \
        --timeout-s "${FEDCHAIN_CLIENT_TIMEOUT_S:-31536000}"
    ;;
"")
    exec fedchain --help
    ;;
*)
    exec fedchain "$@"
    ;;
esac
