#!/bin/sh
# The scheduler's training run as a Kubernetes Job: LOREBOT_TRAIN_COMMAND for a scheduler on
# Kubernetes (deploy/k8s/scheduler.yaml). Creates a Job from the template (deploy/k8s/train-job.yaml,
# mounted from the ConfigMap lorebot-train-job), waits until it completes or fails, and prints the
# last line of its log: `lorebot train --json`'s result, which the scheduler's job log records.
# The Job runs `lorebot train`, which decides itself whether enough is new to train on.
#
# Exit status 0: the Job completed. Anything else: it failed, could not be created, or ran past
# the timeout (then it is deleted); the last line says why.
#
#   LOREBOT_TRAIN_JOB_TEMPLATE         the Job manifest (default /etc/lorebot/train-job/train-job.yaml);
#                                      metadata.generateName gives every run a name of its own
#   LOREBOT_TRAIN_JOB_TIMEOUT_S        seconds to wait for the Job (default 43200: 12 hours)
#   LOREBOT_TRAIN_JOB_POLL_INTERVAL_S  seconds between looks at it (default 30)
#
# Needs kubectl (in the lorebot images) and a service account that may create, get and delete
# Jobs and read their pods' logs in the namespace (deploy/k8s/scheduler.yaml's Role).
set -eu

log() { printf 'run-train-job: %s\n' "$*" >&2; }

template="${LOREBOT_TRAIN_JOB_TEMPLATE:-/etc/lorebot/train-job/train-job.yaml}"
timeout_s="${LOREBOT_TRAIN_JOB_TIMEOUT_S:-43200}"
interval_s="${LOREBOT_TRAIN_JOB_POLL_INTERVAL_S:-30}"
case "$timeout_s" in
    '' | *[!0-9]* | 0) log "LOREBOT_TRAIN_JOB_TIMEOUT_S must be a whole number of seconds, not '$timeout_s'"; exit 2 ;;
esac
case "$interval_s" in
    '' | *[!0-9.]* | *.*.*) log "LOREBOT_TRAIN_JOB_POLL_INTERVAL_S must be a number of seconds, not '$interval_s'"; exit 2 ;;
esac
if [ ! -f "$template" ]; then
    log "FAILED: no Job template at $template (the ConfigMap lorebot-train-job, mounted on the scheduler)"
    exit 2
fi

if ! job=$(kubectl create -f "$template" -o name); then
    log "FAILED: kubectl could not create the training Job from $template"
    exit 1
fi
log "started $job; waiting up to ${timeout_s}s"
started=$(date +%s)

# The last line the Job's pod wrote, or nothing.
last_log_line() { kubectl logs "$job" --tail=1 2>/dev/null | tail -n 1 || true; }

while :; do
    # The conditions that hold: "Complete", or "Failed" (with FailureTarget before it on 1.31+).
    # A failed look (the API server restarting) is not the Job failing: look again.
    conditions=$(kubectl get "$job" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}' 2>/dev/null) \
        || conditions=""
    case " $conditions " in
        *" Complete "*)
            log "$job completed in $(($(date +%s) - started))s"
            line=$(last_log_line)
            printf '%s\n' "${line:-$job completed}"
            exit 0
            ;;
        *" Failed "*)
            reason=$(kubectl get "$job" -o 'jsonpath={.status.conditions[?(@.type=="Failed")].reason}' 2>/dev/null || true)
            line=$(last_log_line)
            [ -n "$line" ] && log "its last log line: $line"
            log "FAILED: $job failed${reason:+ ($reason)}; see kubectl describe $job"
            exit 1
            ;;
    esac
    if [ $(($(date +%s) - started)) -ge "$timeout_s" ]; then
        kubectl delete "$job" --wait=false >/dev/null 2>&1 || true
        log "FAILED: $job did not finish within ${timeout_s}s; deleted it"
        exit 1
    fi
    sleep "$interval_s"
done
