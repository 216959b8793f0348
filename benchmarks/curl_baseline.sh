#!/usr/bin/env bash
# What a user would write from the vendor's curl examples: xargs -P for concurrency, one bash
# process per job that submits, polls /status every 0.2 s (first poll at once) until the job is
# finished, fetches /result once and downloads the file. Needs curl; uses jq when installed,
# otherwise grep/sed.
#
#   RUNCOMFY_API_TOKEN=sim-token RUNCOMFY_API_BASE=http://127.0.0.1:PORT \
#       benchmarks/curl_baseline.sh PROMPTS.txt OUT_DIR [CONCURRENCY]
set -euo pipefail

PROMPTS=$1
export OUT=$2
CONCURRENCY=${3:-64}
export MODEL=bytedance/seedream-5/lite/text-to-image
mkdir -p "$OUT"

field() {  # field NAME < JSON: the first string value of "NAME"
    if command -v jq >/dev/null 2>&1; then
        jq -r --arg f "$1" '.[$f] // empty'
    else
        grep -o "\"$1\": *\"[^\"]*\"" | head -n 1 | sed 's/.*: *"\(.*\)"/\1/'
    fi
}

first_url() {  # the first output URL of a /result answer
    if command -v jq >/dev/null 2>&1; then
        jq -r '.output.image // .output.images[0] // .output.video // .output.videos[0]'
    else
        grep -o '"https\?://[^"]*"' | head -n 1 | tr -d '"'
    fi
}

job() {
    local n=$1 prompt=$2 auth="Authorization: Bearer $RUNCOMFY_API_TOKEN" id status url
    id=$(curl -sS -X POST "$RUNCOMFY_API_BASE/v1/models/$MODEL" -H "$auth" \
        -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"$prompt\", \"resolution\": \"2048x2048 (1:1)\"}" | field request_id)
    while true; do
        status=$(curl -sS "$RUNCOMFY_API_BASE/v1/requests/$id/status" -H "$auth" | field status)
        case $status in completed | failed | cancelled) break ;; esac
        sleep 0.2
    done
    url=$(curl -sS "$RUNCOMFY_API_BASE/v1/requests/$id/result" -H "$auth" | first_url)
    curl -sS -o "$OUT/$(printf %05d "$n").png" "$url"
}
export -f job field first_url

started=$(date +%s.%N)
nl -ba -w1 -s$'\t' "$PROMPTS" | tr '\t' '\n' | xargs -d '\n' -n 2 -P "$CONCURRENCY" bash -c 'job "$0" "$1"'
ended=$(date +%s.%N)
jobs=$(wc -l <"$PROMPTS")
files=$(find "$OUT" -name '*.png' | wc -l)
awk -v j="$jobs" -v f="$files" -v s="$started" -v e="$ended" \
    'BEGIN { printf "{\"jobs\": %d, \"files\": %d, \"wall_seconds\": %.3f}\n", j, f, e - s }'
