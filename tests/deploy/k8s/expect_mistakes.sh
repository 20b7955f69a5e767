#!/usr/bin/env bash
# The validator must fail on testdata/ and name every planted mistake.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if out=$("$here/validate.sh" "$here/testdata" 2>&1); then
  echo "validate.sh passed manifests with planted mistakes:"; echo "$out"; exit 1
fi
echo "$out"
status=0
wants=(
  # testdata/typos
  "nodeSelecter: unknown field" "readinessProbe/grpc/port must be integer"
  "livenessProbe must be an exec probe running meshctl" "MESHD_NODE_NAME must come from spec.nodeName"
  "agent must mount /run/meshd"
  # testdata/tls: plaintext off-loopback, half a TLS setup, probes and certificates that cannot work
  "plain-coordinator coordinator: listens on 0.0.0.0:7070 off-loopback without TLS"
  "MESHD_TLS_CA without MESHD_TLS_CERT, MESHD_TLS_KEY: all three TLS files or none"
  "MESHD_TLS_CA /etc/meshd/tls/ca.crt is on no mounted volume"
  "plain-agent agent: serves health on 0.0.0.0:7071 off-loopback without TLS"
  "plain-agent agent: dials the coordinator at meshd-coordinator:7070 without TLS"
  "readinessProbe is a gRPC probe, but the port speaks mutual TLS"
  "livenessProbe dials meshd-coordinator:7070: probe the coordinator on loopback"
  "is mounted with subPath, which the kubelet never updates"
  "shared-cert-agent agent: its TLS files come from agent-tls, the same for every node"
  "Certificate/coordinator.spec.dnsName: unknown field"
  "issuerRef names Issuer no-such-issuer"
  "lacks the DNS name meshd-coordinator that DaemonSet/shared-cert-agent agent dials"
  'needs the usage "client auth"'
  # testdata/state: metrics scraped as http from a TLS port; the membership key missing or unkeepable
  "no-key-coordinator coordinator: its metrics port speaks mutual TLS (MESHD_TLS_*), but the pod's prometheus.io annotations scrape http"
  "no-key-coordinator coordinator: no MESHD_MEMBERSHIP_KEY"
  "secret-key-coordinator coordinator: MESHD_MEMBERSHIP_KEY /etc/meshd/tls/membership.key is on a read-only volume (secret)"
  "unmounted-key-coordinator coordinator: MESHD_MEMBERSHIP_KEY /var/lib/meshd/membership.key is on no mounted volume"
  "pvc-key-coordinator coordinator: MESHD_MEMBERSHIP_KEY /var/lib/meshd/membership.key is on a persistent volume with fsGroup and without fsGroupChangePolicy: OnRootMismatch"
  # testdata/lifecycle: the pod's name as hostname, no preStop, a surge, a grace period too short,
  # a training Job without NCCL
  "DaemonSet/no-hook-agent: MESHD_HOSTNAME must come from spec.nodeName"
  "DaemonSet/no-hook-agent: the agent has no preStop hook running meshctl --agent /run/meshd/agent.sock leave"
  "DaemonSet/no-hook-agent: updateStrategy.rollingUpdate.maxSurge 1: two agents on one node"
  "DaemonSet/short-grace-agent: terminationGracePeriodSeconds 20 leaves no time for preStop's meshctl leave (--timeout 30s)"
  "Job/nccl-less-train container train: runs mesh_worker from the meshd image, which has no NCCL"
  "Job/nccl-less-train container train: mesh_worker without --require-nccl"
  # testdata/monitoring: series meshd does not export, bad PromQL, alerts unlike the docs, TLS scrapes
  "NodesDeadTypo: expr names meshd_coordinator_dead_nodes, a series meshd does not export"
  "Broken: expr is not valid PromQL"
  'lacks the documented alert increase(meshd_coordinator_events_total{event="recovery_refused"}[10m])>0'
  "AgentUnregistered: for: (none), but docs/operations.md says 1m"
  "NodesDeadTypo: not one of docs/operations.md's alerts"
  "ServiceMonitor/http-monitor endpoint 0: scheme http, but the metrics port speaks mutual TLS"
  "ServiceMonitor/http-monitor endpoint 0: no client certificate"
  "ServiceMonitor/server-cert-monitor.spec.endpoints[0].tlsConfg: unknown field"
  'Certificate/server-only (Secret server-only-tls) lacks the usage "client auth"'
)
for want in "${wants[@]}"; do
  grep -qF "$want" <<<"$out" || { echo "MISSING: $want"; status=1; }
done
exit $status
