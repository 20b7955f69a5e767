// Validates every kustomization under deploy/k8s offline, as the API server would on apply:
//   1. `kustomize build` renders it (a broken patch or missing resource fails here);
//   2. each object is checked against Kubernetes' OpenAPI schema for its apiVersion/kind
//      (kubernetes-models: types, required fields, enums, formats);
//   3. each field must exist in that schema (the API server's strict field validation): a typo
//      such as `nodeSelecter` is an error, not silently dropped;
//   4. meshd's own rules: containers set resources and run as non-root; the coordinator has a PDB;
//      the agent gets NODE_NAME from the Downward API and mounts /run/meshd; no meshd port other
//      hosts reach is plaintext without --insecure (meshd would refuse to start, exit 2); TLS files
//      are on mounted volumes, an agent's are its node's own; probes are ones that work with TLS
//      (exec `meshctl ... status`; the kubelet's gRPC probe speaks no TLS); a TLS daemon's metrics,
//      mutual TLS too, are annotated prometheus.io/scheme: https; a TLS coordinator keeps a
//      membership key (MESHD_MEMBERSHIP_KEY) on a writable volume that leaves its mode alone;
//   4b. the agent's lifecycle: MESHD_HOSTNAME from spec.nodeName too (a pod's own hostname is its
//      random name), a preStop hook running `meshctl --agent <its socket> leave` within
//      terminationGracePeriodSeconds, and a RollingUpdate that never runs two agents on a node
//      (maxSurge 0: they share its socket); a Job running mesh_worker uses an image with NCCL (not
//      the meshd image) and --require-nccl;
//   4c. the Prometheus Operator's kinds (monitoring.coreos.com/v1, schemas from
//      @kubernetes-models/prometheus-operator, their fields checked by the types it declares): a
//      PrometheusRule's expressions parse as PromQL (@prometheus-io/lezer-promql), name only series
//      meshd exports (the names in daemon/metrics/*.cc) and are exactly the alerts documented in
//      docs/operations.md; a ServiceMonitor/PodMonitor of a TLS metrics port scrapes https with
//      a client certificate that a Certificate here issues for client auth;
//   5. cert-manager's kinds (cert-manager.io/v1 Certificate, Issuer, ClusterIssuer): their CRD
//      schemas are not available offline (not in Debian, not in kubernetes-models), so they are
//      checked by hand-written rules instead: the spec fields cert-manager v1 knows, the required
//      ones, and against the manifests that use them (the coordinator's Certificate names what
//      agents and probes dial, its issuer exists). Any other kind without a schema is an error.
// Usage: node validate.mjs <deploy/k8s dir> <repository root>   Exit 0 when all pass; prints every
// problem.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import yaml from "js-yaml";
import { parser as promql } from "@prometheus-io/lezer-promql";

const require = createRequire(import.meta.url);
const modelsDir = dirname(require.resolve("kubernetes-models/package.json"));
const apimachineryDir = dirname(require.resolve("@kubernetes-models/apimachinery/package.json"));
const kustomize = join(dirname(require.resolve("kustomize/package.json")), "run.js");
const operatorDir = dirname(require.resolve("@kubernetes-models/prometheus-operator/package.json"));
// Where the schema of an API group lives: kubernetes-models, or a CRD package.
const modelRoot = (group) => (group === "monitoring.coreos.com" ? operatorDir : modelsDir);

// ---- the schema's field names, from kubernetes-models' type declarations ----
const interfaces = new Map();  // qualified name (IIoK8s...) -> Map(field -> type text)
function indexDeclarations(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) { if (entry !== "node_modules") indexDeclarations(path); continue; }
    if (!entry.endsWith(".d.ts")) continue;
    const text = readFileSync(path, "utf8");
    const aliases = new Map();
    for (const m of text.matchAll(/export (?:type )?\{([^}]*)\}/g)) {
      for (const part of m[1].split(",")) {
        const [local, qualified] = part.trim().split(/\s+as\s+/);
        if (qualified) aliases.set(local, qualified);
      }
    }
    for (const m of text.matchAll(/export interface (\w+)(?: extends [^{]*)? \{\n([\s\S]*?)\n\}/g)) {
      const fields = new Map();
      // Top-level fields are indented 4 spaces; a type may span lines ({ [key: string]: T; }).
      for (const f of `${m[2]}\n`.matchAll(/^ {4}"([^"]+)"\??: ([\s\S]*?);\n(?= {4}"| {4}\/\*\*|$)/gm)) {
        fields.set(f[1], f[2]);
      }
      if (/extends TypeMeta/.test(m[0])) { fields.set("apiVersion", "string"); fields.set("kind", "string"); }
      interfaces.set(aliases.get(m[1]) ?? m[1], fields);
      interfaces.set(`${path}#${m[1]}`, fields);
    }
  }
}

// Reports fields of `value` that the schema type `type` does not have, recursively.
function checkFields(value, type, where, problems) {
  type = type.trim();
  const array = type.match(/^Array<(.*)>$/s);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, array[1], `${where}[${i}]`, problems));
    return;
  }
  const map = type.match(/^\{\s*\[key: string\]: (.*?);?\s*\}$/s);
  if (map) {
    if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) checkFields(v, map[1], `${where}.${k}`, problems);
    return;
  }
  const fields = interfaces.get(type);
  if (!fields || !value || typeof value !== "object" || Array.isArray(value)) return;  // a scalar or free-form type
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) problems.push(`${where}.${k}: unknown field (not in ${type.replace(/^IIoK8s/, "")})`);
    else checkFields(v, fields.get(k), `${where}.${k}`, problems);
  }
}

// ---- meshd's own rules ----
function checkMeshdRules(doc, where, problems) {
  const spec = doc.spec?.template?.spec ?? doc.spec?.jobTemplate?.spec?.template?.spec;
  if (!spec) return;
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    const at = `${where} container ${c.name}`;
    if (!c.resources?.limits?.memory && !c.resources?.limits?.["nvidia.com/gpu"]) problems.push(`${at}: no memory limit`);
    if (c.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation must be false`);
    if (!(c.securityContext?.capabilities?.drop ?? []).includes("ALL")) problems.push(`${at}: must drop ALL capabilities`);
    const root = c.securityContext?.runAsUser === 0;
    if (root && !(doc.kind === "DaemonSet" && (spec.initContainers ?? []).includes(c))) problems.push(`${at}: runs as root`);
    if (!root && spec.securityContext?.runAsNonRoot !== true && c.securityContext?.runAsNonRoot !== true) problems.push(`${at}: runAsNonRoot not set`);
  }
  const meshd = spec.containers.filter((c) => ["coordinator", "agent", "standalone"].includes((c.args ?? [])[0]));
  for (const c of meshd) {
    checkTransport(doc, spec, c, `${where} ${c.name}`, problems);
    if (c.args[0] === "agent") {
      const node = (c.env ?? []).find((e) => e.name === "MESHD_NODE_NAME");
      if (node?.valueFrom?.fieldRef?.fieldPath !== "spec.nodeName") problems.push(`${where}: MESHD_NODE_NAME must come from spec.nodeName`);
      if (!(c.volumeMounts ?? []).some((m) => m.mountPath === "/run/meshd")) problems.push(`${where}: agent must mount /run/meshd`);
      const host = (c.env ?? []).find((e) => e.name === "MESHD_HOSTNAME");
      if (host?.valueFrom?.fieldRef?.fieldPath !== "spec.nodeName") problems.push(`${where}: MESHD_HOSTNAME must come from spec.nodeName (the downward API): a pod's own hostname is its random name, and the coordinator orders nodes by hostname`);
      if (doc.kind === "DaemonSet") checkAgentLifecycle(doc, spec, c, where, problems);
    }
  }
  for (const c of spec.containers) {
    const line = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
    if (!/(^|[\s/])mesh_worker\s/.test(line)) continue;
    const image = String(c.image ?? "").split(/[:@]/)[0];
    if (/(^|\/)meshd$/.test(image)) problems.push(`${where} container ${c.name}: runs mesh_worker from the meshd image, which has no NCCL: use an image built FROM a CUDA/NCCL base (overlays/example/train-image/Dockerfile)`);
    if (!/--require-nccl\b/.test(line)) problems.push(`${where} container ${c.name}: mesh_worker without --require-nccl: a worker without NCCL would skip its communicators and exit 0`);
  }
}

// An agent's upgrade: the old agent takes its node out of the cluster first (preStop: meshctl
// leave on its own socket), within the grace period, and never runs beside the new one.
function checkAgentLifecycle(doc, spec, c, where, problems) {
  const socket = (meshdSettings(c).get("MESHD_SOCKET") ?? "/run/meshd/agent.sock").replace(/^unix:/, "");
  const cmd = (c.lifecycle?.preStop?.exec?.command ?? []).map(String);
  const i = cmd.indexOf("--agent");
  if (!/(^|\/)meshctl$/.test(cmd[0] ?? "") || !cmd.includes("leave")) {
    problems.push(`${where}: the agent has no preStop hook running meshctl --agent ${socket} leave: an upgrade would stop it without taking its node out of the cluster first`);
  } else if (i < 0 || String(cmd[i + 1]).replace(/^unix:/, "") !== socket) {
    problems.push(`${where}: preStop must ask the agent on its own socket (meshctl --agent ${socket} leave)`);
  } else {
    const t = cmd.indexOf("--timeout");
    const seconds = t >= 0 ? goSeconds(cmd[t + 1]) : 10;
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    // After the hook the agent stops in at most ~6 s (a last LeaveNode, its servers' shutdown).
    if (!(seconds + 6 <= grace)) problems.push(`${where}: terminationGracePeriodSeconds ${grace} leaves no time for preStop's meshctl leave (--timeout ${t >= 0 ? cmd[t + 1] : "10s"}) and the agent's stop (~6 s)`);
  }
  const u = doc.spec?.updateStrategy ?? {};
  if ((u.type ?? "RollingUpdate") !== "RollingUpdate") problems.push(`${where}: updateStrategy ${u.type}: agents are upgraded by RollingUpdate (each old agent leaves first, in its preStop)`);
  const surge = u.rollingUpdate?.maxSurge ?? 0;
  if (!(surge === 0 || surge === "0" || surge === "0%")) problems.push(`${where}: updateStrategy.rollingUpdate.maxSurge ${surge}: two agents on one node would share its socket (the new one exits: another agent is serving); use maxSurge 0 and maxUnavailable`);
}
const goSeconds = (d) => {
  const m = String(d ?? "").match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/);
  return m ? Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]] : NaN;
};

// ---- meshd's transport: TLS, --insecure, probes ----
// A container's meshd settings, MESHD_* names: env first, then args (the command line wins).
function meshdSettings(c) {
  const s = new Map();
  for (const e of c.env ?? []) if (e.name.startsWith("MESHD_")) s.set(e.name, e.value ?? (e.valueFrom ? "<downward>" : ""));
  const args = c.args ?? [];
  for (let i = 1; i < args.length; i++) {
    const m = String(args[i]).match(/^--([a-z][a-z-]*)(?:=(.*))?$/s);
    if (!m) continue;
    const name = `MESHD_${m[1].toUpperCase().replace(/-/g, "_")}`;
    if (m[2] !== undefined) s.set(name, m[2]);
    else if (m[1] === "insecure") s.set(name, "true");
    else s.set(name, String(args[++i] ?? ""));
  }
  return s;
}
const enabled = (v) => v !== undefined && !/^(|0|false|no|off)$/i.test(String(v).trim());
// As meshd's security::IsLocalOnly: 127.0.0.0/8, [::1], localhost. An empty host is every interface.
function hostOf(address) {
  const m = String(address).match(/^(?:\[([^\]]*)\]|([^:]*)):\d+$/);
  return m ? (m[1] ?? m[2]) : null;
}
const loopback = (address) => /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i.test(hostOf(address) ?? "");
const TLS = ["MESHD_TLS_CERT", "MESHD_TLS_KEY", "MESHD_TLS_CA"];

function checkTransport(doc, spec, c, at, problems) {
  const mode = c.args[0];
  const s = meshdSettings(c);
  const given = TLS.filter((k) => s.get(k));
  if (given.length > 0 && given.length < 3) {
    problems.push(`${at}: ${given.join(", ")} without ${TLS.filter((k) => !s.get(k)).join(", ")}: all three TLS files or none (meshd exits 2)`);
  }
  const tls = given.length === 3;
  const insecure = enabled(s.get("MESHD_INSECURE"));
  const plain = (what, address) => {
    if (!tls && !insecure && hostOf(address) !== null && !loopback(address)) {
      problems.push(`${at}: ${what} ${address} off-loopback without TLS: meshd refuses to start (exit 2); set MESHD_TLS_CERT/KEY/CA (files mounted from a Secret or the host) or, knowingly, --insecure`);
    }
  };
  if (mode !== "agent") plain("listens on", s.get("MESHD_LISTEN") ?? (tls ? "0.0.0.0:7070" : "127.0.0.1:7070"));
  if (mode !== "coordinator" && s.get("MESHD_HEALTH_LISTEN")) plain("serves health on", s.get("MESHD_HEALTH_LISTEN"));
  if (mode === "agent" && !tls && !loopback(s.get("MESHD_COORDINATOR") ?? "127.0.0.1:7070")) {
    problems.push(`${at}: dials the coordinator at ${s.get("MESHD_COORDINATOR")} without TLS (a coordinator other hosts reach speaks mutual TLS)`);
  }
  // The TLS files: on a volume, mounted so that renewals reach them; an agent's, its node's own.
  const sharedReported = new Set();
  for (const k of given) {
    const path = s.get(k);
    const mount = (c.volumeMounts ?? []).filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    if (!mount) { problems.push(`${at}: ${k} ${path} is on no mounted volume`); continue; }
    if (mount.subPath || mount.subPathExpr) problems.push(`${at}: ${k} ${path} is mounted with subPath, which the kubelet never updates: a renewed certificate would not reach meshd`);
    const volume = (spec.volumes ?? []).find((v) => v.name === mount.name);
    const shared = volume?.secret?.secretName ?? volume?.configMap?.name ??
      (volume?.projected?.sources ?? []).map((x) => x.secret?.name ?? x.configMap?.name).find(Boolean);
    if (mode === "agent" && shared && !sharedReported.has(shared)) {
      sharedReported.add(shared);
      problems.push(`${at}: its TLS files come from ${shared}, the same for every node: each agent needs a certificate naming its own node (hostPath /etc/meshd/tls, docs/operations.md)`);
    }
  }
  // Probes: the kubelet's gRPC probe speaks plaintext only; exec `meshctl ... status` works with TLS.
  for (const probe of ["livenessProbe", "readinessProbe"]) {
    const p = c[probe];
    if (!p) { problems.push(`${at}: no ${probe}`); continue; }
    if (p.grpc) {
      if (tls) problems.push(`${at}: ${probe} is a gRPC probe, but the port speaks mutual TLS, which the kubelet's gRPC probe cannot: exec meshctl ... status`);
      continue;
    }
    const cmd = (p.exec?.command ?? []).map(String);
    if (!/(^|\/)meshctl$/.test(cmd[0] ?? "") || !cmd.includes("status")) {
      problems.push(`${at}: ${probe} must be an exec probe running meshctl ... status (or, plaintext only, a native gRPC probe)`);
      continue;
    }
    const probeArgs = meshdSettings({ args: cmd });
    if (mode === "agent" || probeArgs.has("MESHD_AGENT_SOCKET") || cmd.includes("--agent")) {
      const i = cmd.indexOf("--agent");
      const socket = (i >= 0 ? cmd[i + 1] : "").replace(/^unix:/, "");
      if (socket !== (s.get("MESHD_SOCKET") ?? "/run/meshd/agent.sock").replace(/^unix:/, "")) {
        problems.push(`${at}: ${probe} must ask the agent on its own socket (meshctl --agent ${s.get("MESHD_SOCKET") ?? "/run/meshd/agent.sock"} status)`);
      }
      continue;
    }
    const target = probeArgs.get("MESHD_COORDINATOR") ?? "127.0.0.1:7070";
    if (!loopback(target)) problems.push(`${at}: ${probe} dials ${target}: probe the coordinator on loopback (a Service routes only to ready pods)`);
    for (const k of TLS) {
      if (tls && probeArgs.get(k) !== s.get(k)) problems.push(`${at}: ${probe}: meshctl needs ${k.replace("MESHD_", "--").replace("_", "-").toLowerCase()} ${s.get(k)}, the coordinator's own`);
    }
    probeTargets.push({ secret: tlsSecretOf(spec, c, s), host: hostOf(target), at: `${at} ${probe}` });
  }
  checkMetricsScheme(doc, s, tls, at, problems);
  if (mode !== "agent") checkMembershipKey(spec, c, s, tls, at, problems);
  if (mode === "agent") {
    const host = hostOf(s.get("MESHD_COORDINATOR") ?? "");
    if (tls && host) dialedNames.push({ host, at });
  } else if (tls) {
    coordinatorSecrets.push({ secret: tlsSecretOf(spec, c, s), at });
  }
}
// With TLS files the metrics port speaks mutual TLS (HTTPS only, a client certificate of the CA):
// annotations that tell Prometheus to scrape plain http would fail on every scrape.
function checkMetricsScheme(doc, s, tls, at, problems) {
  const annotations = doc.spec?.template?.metadata?.annotations ?? {};
  if (!s.get("MESHD_METRICS_LISTEN") || !enabled(annotations["prometheus.io/scrape"])) return;
  const scheme = String(annotations["prometheus.io/scheme"] ?? "http").trim().toLowerCase();
  if (tls && scheme !== "https") {
    problems.push(`${at}: its metrics port speaks mutual TLS (MESHD_TLS_*), but the pod's prometheus.io annotations scrape ${scheme}: set prometheus.io/scheme: https, and give Prometheus a client certificate of the CA (docs/security.md#metrics)`);
  }
  if (!tls && scheme === "https") problems.push(`${at}: prometheus.io/scheme is https, but without TLS files the metrics port serves plain http`);
}

// The coordinator's membership key: with TLS it must have one (else a restarted coordinator takes
// the jobs agents report on their word), in a directory meshd can write (it creates the key, 0600,
// beside it and renames it), on a volume that outlives the container, whose files the kubelet does
// not chmod: fsGroup's ownership change adds group rw on every mount of a PVC (policy Always), and
// meshd refuses a key others than its owner may read.
function checkMembershipKey(spec, c, s, tls, at, problems) {
  const key = s.get("MESHD_MEMBERSHIP_KEY");
  if (!key) {
    if (tls) problems.push(`${at}: no MESHD_MEMBERSHIP_KEY: a restarted coordinator would take back the jobs agents report on their word; set it to a file on a writable volume (an emptyDir or PVC at /var/lib/meshd)`);
    return;
  }
  const mounts = (c.volumeMounts ?? []).filter((m) => key === m.mountPath || key.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mount = mounts[0];
  if (!mount) { problems.push(`${at}: MESHD_MEMBERSHIP_KEY ${key} is on no mounted volume: the container's filesystem is read-only or lost with the container; mount an emptyDir or PVC at its directory`); return; }
  if (mount.mountPath === key) problems.push(`${at}: MESHD_MEMBERSHIP_KEY ${key} is a mount point: meshd creates the key in its directory (a file written beside it, then linked); mount the directory`);
  const volume = (spec.volumes ?? []).find((v) => v.name === mount.name) ?? {};
  const readOnlyKind = ["secret", "configMap", "projected", "downwardAPI"].find((k) => volume[k]);
  if (mount.readOnly || readOnlyKind) {
    problems.push(`${at}: MESHD_MEMBERSHIP_KEY ${key} is on a read-only volume (${readOnlyKind ?? "readOnly: true"}): meshd creates the key there on first start; use an emptyDir or PVC`);
  }
  const sc = spec.securityContext ?? {};
  if ((volume.persistentVolumeClaim || volume.ephemeral) && sc.fsGroup !== undefined && sc.fsGroupChangePolicy !== "OnRootMismatch") {
    problems.push(`${at}: MESHD_MEMBERSHIP_KEY ${key} is on a persistent volume with fsGroup and without fsGroupChangePolicy: OnRootMismatch: the kubelet adds group rw to the key on every mount and meshd refuses it (mode 0660), so the coordinator cannot restart`);
  }
}
function tlsSecretOf(spec, c, s) {
  const path = s.get("MESHD_TLS_CERT") ?? "";
  const mount = (c.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
  return (spec.volumes ?? []).find((v) => v.name === mount?.name)?.secret?.secretName;
}
// Filled per kustomization by checkTransport, checked against its Certificates.
let probeTargets = [], dialedNames = [], coordinatorSecrets = [];

// ---- cert-manager.io/v1, by rules (no CRD schema offline) ----
// Spec fields of cert-manager v1 (pkg/apis/certmanager/v1/types_certificate.go, types_issuer.go).
const CERT_FIELDS = new Set(["subject", "literalSubject", "commonName", "duration", "renewBefore",
  "renewBeforePercentage", "dnsNames", "ipAddresses", "uris", "otherNames", "emailAddresses", "secretName",
  "secretTemplate", "keystores", "issuerRef", "isCA", "usages", "privateKey", "encodeUsagesInRequest",
  "revisionHistoryLimit", "additionalOutputFormats", "nameConstraints"]);
const PRIVATE_KEY_FIELDS = new Set(["rotationPolicy", "encoding", "algorithm", "size"]);
const ISSUER_TYPES = new Set(["acme", "ca", "vault", "selfSigned", "venafi"]);
const USAGES = new Set(["signing", "digital signature", "content commitment", "key encipherment",
  "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
  "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
  "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]);
const isCertManager = (doc) => /^cert-manager\.io\//.test(doc.apiVersion ?? "");

function checkCertManager(doc, where, docs, problems) {
  if (doc.apiVersion !== "cert-manager.io/v1") { problems.push(`${where}: ${doc.apiVersion}: meshd's manifests use cert-manager.io/v1`); return; }
  const spec = doc.spec;
  if (!spec || typeof spec !== "object") { problems.push(`${where}: no spec`); return; }
  if (doc.kind === "Issuer" || doc.kind === "ClusterIssuer") {
    for (const k of Object.keys(spec)) if (!ISSUER_TYPES.has(k)) problems.push(`${where}.spec.${k}: unknown field (not in cert-manager IssuerSpec)`);
    const types = Object.keys(spec).filter((k) => ISSUER_TYPES.has(k));
    if (types.length !== 1) problems.push(`${where}: spec must set exactly one of ${[...ISSUER_TYPES].join(", ")}`);
    if (spec.ca && !spec.ca.secretName) problems.push(`${where}: spec.ca.secretName is required`);
    return;
  }
  if (doc.kind !== "Certificate") { problems.push(`${where}: no rules for cert-manager kind ${doc.kind}`); return; }
  for (const k of Object.keys(spec)) if (!CERT_FIELDS.has(k)) problems.push(`${where}.spec.${k}: unknown field (not in cert-manager CertificateSpec)`);
  for (const k of Object.keys(spec.privateKey ?? {})) if (!PRIVATE_KEY_FIELDS.has(k)) problems.push(`${where}.spec.privateKey.${k}: unknown field`);
  if (!spec.secretName) problems.push(`${where}: spec.secretName is required`);
  if (!spec.issuerRef?.name) problems.push(`${where}: spec.issuerRef.name is required`);
  if (!["commonName", "dnsNames", "uris", "ipAddresses", "emailAddresses", "literalSubject", "otherNames"].some((k) => spec[k]?.length)) {
    problems.push(`${where}: names nothing (commonName, dnsNames, uris, ipAddresses...)`);
  }
  for (const u of spec.usages ?? []) if (!USAGES.has(u)) problems.push(`${where}: spec.usages: unknown usage "${u}"`);
  for (const d of ["duration", "renewBefore"]) {
    if (spec[d] !== undefined && !/^(\d+(\.\d+)?(h|m|s|ms))+$/.test(String(spec[d]))) problems.push(`${where}: spec.${d} "${spec[d]}" is not a Go duration`);
  }
  const kind = spec.issuerRef?.kind ?? "Issuer";
  if ((spec.issuerRef?.group ?? "cert-manager.io") === "cert-manager.io" && kind === "Issuer" &&
      !docs.some((d) => d.kind === "Issuer" && d.metadata?.name === spec.issuerRef?.name)) {
    problems.push(`${where}: issuerRef names Issuer ${spec.issuerRef?.name}, which this kustomization does not define`);
  }
  // The coordinator's certificate must name what its clients dial, and serve as a client for probes.
  if (!coordinatorSecrets.some((x) => x.secret === spec.secretName)) return;
  const usages = spec.usages ?? ["digital signature", "key encipherment"];
  if (!usages.includes("server auth")) problems.push(`${where}: the coordinator's certificate needs the usage "server auth"`);
  const ip = (h) => /^[\d.]+$|:/.test(h);
  for (const d of dialedNames) {
    const names = ip(d.host) ? spec.ipAddresses ?? [] : spec.dnsNames ?? [];
    if (!names.includes(d.host)) problems.push(`${where}: lacks ${ip(d.host) ? "the IP" : "the DNS name"} ${d.host} that ${d.at} dials (MESHD_COORDINATOR)`);
  }
  for (const p of probeTargets.filter((x) => x.secret === spec.secretName)) {
    if (!usages.includes("client auth")) problems.push(`${where}: ${p.at} presents this certificate as a client: it needs the usage "client auth"`);
    const names = ip(p.host) ? spec.ipAddresses ?? [] : spec.dnsNames ?? [];
    if (!names.includes(p.host)) problems.push(`${where}: lacks ${p.host}, which ${p.at} dials`);
  }
}


// ---- the Prometheus Operator's kinds (monitoring.coreos.com/v1) ----
// Their declarations nest every type inline ({ "field"?: T; ... }), so they are parsed here into
// a tree the field check walks: object (fields), array, map, or anything else (not checked).
function parseTsType(text) {
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|\[key: string\]|[{}<>;:?|\[\]]|[^\s{}<>;:?|"\[\]]+/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  function type() {
    const alternatives = [primary()];
    while (peek() === "|") { i++; alternatives.push(primary()); }
    return alternatives.find((a) => a.kind !== "other") ?? alternatives[0];
  }
  function primary() {
    const t = tokens[i++];
    if (t === "{") {
      const fields = new Map();
      let map = null;
      while (peek() !== "}" && i < tokens.length) {
        const key = tokens[i++];
        if (peek() === "?") i++;
        i++;  // ":"
        const value = type();
        if (peek() === ";") i++;
        if (key === "[key: string]") map = value; else fields.set(key.replace(/^"|"$/g, ""), value);
      }
      i++;  // "}"
      return map && fields.size === 0 ? { kind: "map", of: map } : { kind: "object", fields };
    }
    if (t === "Array") { i++; const of = type(); i++; return { kind: "array", of }; }
    while (peek() === "[" ) { while (tokens[i++] !== "]"); }  // IFoo["spec"]
    return { kind: "other" };
  }
  return type();
}
function checkTsFields(value, t, where, problems) {
  if (!t || value === null || typeof value !== "object") return;
  if (t.kind === "array") { if (Array.isArray(value)) value.forEach((v, k) => checkTsFields(v, t.of, `${where}[${k}]`, problems)); return; }
  if (t.kind === "map") { for (const [k, v] of Object.entries(value)) checkTsFields(v, t.of, `${where}.${k}`, problems); return; }
  if (t.kind !== "object" || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (!t.fields.has(k)) problems.push(`${where}.${k}: unknown field`);
    else checkTsFields(v, t.fields.get(k), `${where}.${k}`, problems);
  }
}
// The spec's type of an operator kind, from its declaration file.
function operatorSpecType(declarationPath, kind) {
  const text = readFileSync(declarationPath, "utf8");
  const body = text.match(new RegExp(`export interface I${kind} \\{\\n([\\s\\S]*?)\\n\\}`))?.[1] ?? "";
  const at = body.search(/^ {4}"spec"\??: /m);
  return at < 0 ? null : parseTsType(body.slice(body.indexOf(":", at) + 1));  // the first type there
}

// The series meshd exports: every name its metrics code registers (daemon/metrics/*.cc), and a
// histogram's _bucket, _sum and _count.
function exportedSeries(repo) {
  const names = new Set();
  const dir = join(repo, "daemon", "metrics");
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".cc"))) {
    for (const m of readFileSync(join(dir, f), "utf8").matchAll(/"((?:meshd|grpc)_[a-z0-9_]+)"/g)) {
      for (const suffix of ["", "_bucket", "_sum", "_count"]) names.add(m[1] + suffix);
    }
  }
  return names;
}
// docs/operations.md's alerts: the code block after "Useful alerts:", one expression a line, a
// comment "# for more than a minute" meaning `for: 1m`.
function documentedAlerts(repo) {
  const text = readFileSync(join(repo, "docs", "operations.md"), "utf8");
  const block = text.match(/Useful alerts:\s*\n```\n([\s\S]*?)```/)?.[1] ?? "";
  return block.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
    const [expr, comment] = l.split(/\s+#\s*/);
    const minutes = comment?.match(/for more than (a|\d+) minutes?/);
    return { expr: normalizePromql(expr), for: minutes ? `${minutes[1] === "a" ? 1 : minutes[1]}m` : undefined };
  });
}
const normalizePromql = (e) => String(e).replace(/\s+/g, "").trim();

// Series names in a PromQL expression (every vector selector's metric name); parse errors listed.
function promqlNames(expr) {
  const tree = promql.parse(expr);
  const names = [], errors = [];
  tree.iterate({
    enter(n) {
      if (n.type.isError) errors.push(n.from);
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        if (id) names.push(expr.slice(id.from, id.to));
      }
    },
  });
  return { names, errors };
}

function checkPrometheusRule(doc, where, repo, problems) {
  const exported = exportedSeries(repo);
  const documented = documentedAlerts(repo);
  const alerts = [];
  for (const g of doc.spec?.groups ?? []) {
    for (const r of g.rules ?? []) {
      const at = `${where} ${r.alert ?? r.record ?? "rule"}`;
      const { names, errors } = promqlNames(String(r.expr));
      if (errors.length) { problems.push(`${at}: expr is not valid PromQL (at character ${errors[0]}): ${r.expr}`); continue; }
      for (const n of names) if (!exported.has(n)) problems.push(`${at}: expr names ${n}, a series meshd does not export (daemon/metrics)`);
      if (r.alert) alerts.push({ alert: r.alert, expr: normalizePromql(r.expr), for: r.for });
    }
  }
  for (const d of documented) {
    const a = alerts.find((x) => x.expr === d.expr);
    if (!a) problems.push(`${where}: lacks the documented alert ${d.expr} (docs/operations.md "Useful alerts")`);
    else if ((a.for ?? undefined) !== d.for) problems.push(`${where} ${a.alert}: for: ${a.for ?? "(none)"}, but docs/operations.md says ${d.for ?? "none"}`);
  }
  for (const a of alerts) {
    if (!documented.some((d) => d.expr === a.expr)) problems.push(`${where} ${a.alert}: not one of docs/operations.md's alerts (document it there, or drop it): ${a.expr}`);
  }
}

// A monitor of meshd's metrics: over https with a client certificate when the port speaks TLS, the
// certificate's Secret one a Certificate here issues for client auth.
function checkMonitor(doc, where, docs, problems) {
  const endpoints = doc.kind === "ServiceMonitor" ? doc.spec?.endpoints ?? [] : doc.spec?.podMetricsEndpoints ?? [];
  const labels = doc.spec?.selector?.matchLabels ?? {};
  const matches = (l) => Object.entries(labels).every(([k, v]) => l?.[k] === v);
  const workloads = docs.filter((d) => ["Deployment", "DaemonSet"].includes(d.kind));
  let tlsTargets;
  if (doc.kind === "ServiceMonitor") {
    const services = docs.filter((d) => d.kind === "Service" && matches(d.metadata?.labels));
    if (!services.length) problems.push(`${where}: selects no Service of this kustomization`);
    for (const e of endpoints) {
      if (e.port && !services.some((sv) => (sv.spec?.ports ?? []).some((p) => p.name === e.port))) problems.push(`${where}: no selected Service has a port named ${e.port}`);
    }
    tlsTargets = workloads.filter((w) => services.some((sv) => Object.entries(sv.spec?.selector ?? {}).every(([k, v]) => w.spec?.template?.metadata?.labels?.[k] === v)));
  } else {
    tlsTargets = workloads.filter((w) => matches(w.spec?.template?.metadata?.labels));
    if (!tlsTargets.length) problems.push(`${where}: selects no pods of this kustomization`);
  }
  const tls = tlsTargets.some((w) => (w.spec.template.spec.containers ?? []).some((c) => TLS.every((k) => meshdSettings(c).get(k))));
  const issued = (name) => docs.find((d) => isCertManager(d) && d.kind === "Certificate" && d.spec?.secretName === name);
  for (const [k, e] of endpoints.entries()) {
    const at = `${where} endpoint ${k}`;
    if (!tls) continue;
    if ((e.scheme ?? "http") !== "https") problems.push(`${at}: scheme ${e.scheme ?? "http"}, but the metrics port speaks mutual TLS: scheme https`);
    const t = e.tlsConfig ?? {};
    const secrets = [t.cert?.secret?.name, t.keySecret?.name].filter(Boolean);
    if (!t.cert || !t.keySecret) { problems.push(`${at}: no client certificate (tlsConfig.cert and keySecret): the metrics port requires one of meshd's CA (docs/security.md#metrics)`); continue; }
    if (!t.ca) problems.push(`${at}: no tlsConfig.ca: Prometheus cannot verify meshd's certificate`);
    for (const name of new Set(secrets)) {
      const cert = issued(name);
      if (!cert) problems.push(`${at}: the client certificate's Secret ${name} is issued by no Certificate here`);
      else if (!(cert.spec?.usages ?? []).includes("client auth")) problems.push(`${at}: Certificate/${cert.metadata?.name} (Secret ${name}) lacks the usage "client auth"`);
    }
  }
}

// ---- run ----
const root = process.argv[2];
const repo = process.argv[3];
if (!root || !existsSync(root) || !repo || !existsSync(join(repo, "docs", "operations.md"))) {
  console.error("usage: node validate.mjs <deploy/k8s dir> <repository root>"); process.exit(2);
}
indexDeclarations(modelsDir);
indexDeclarations(apimachineryDir);
const kustomizations = [];
(function find(dir) {
  if (existsSync(join(dir, "kustomization.yaml"))) kustomizations.push(dir);
  for (const e of readdirSync(dir)) if (statSync(join(dir, e)).isDirectory()) find(join(dir, e));
})(root);

let failed = 0;
for (const dir of kustomizations) {
  const problems = [];
  let docs = [];
  try {
    docs = yaml.loadAll(execFileSync(process.execPath, [kustomize, "build", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })).filter(Boolean);
  } catch (e) {
    problems.push(`kustomize build failed: ${e.stderr || e.message}`);
  }
  const kinds = new Map();
  probeTargets = []; dialedNames = []; coordinatorSecrets = [];
  for (const doc of docs) {
    const where = `${doc.kind}/${doc.metadata?.name}`;
    kinds.set(doc.kind, (kinds.get(doc.kind) ?? 0) + 1);
    if (isCertManager(doc)) continue;  // after the workloads: their rules read what those use
    const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : [null, doc.apiVersion];
    const modelPath = join(modelRoot(group), group ?? "", version, `${doc.kind}.js`);
    if (!existsSync(modelPath)) { problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`); continue; }
    const Model = require(modelPath)[doc.kind];
    try { new Model(doc).validate(); } catch (e) { problems.push(`${where}: ${e.message}`); }
    if (group === "monitoring.coreos.com") {
      checkTsFields(doc.spec, operatorSpecType(modelPath.replace(/\.js$/, ".d.ts"), doc.kind), `${where}.spec`, problems);
      if (doc.kind === "PrometheusRule") checkPrometheusRule(doc, where, repo, problems);
      if (doc.kind === "ServiceMonitor" || doc.kind === "PodMonitor") checkMonitor(doc, where, docs, problems);
      continue;
    }
    const declaration = readFileSync(modelPath.replace(/\.js$/, ".d.ts"), "utf8").match(/export interface (\w+)/)[1];
    checkFields(doc, `${modelPath.replace(/\.js$/, ".d.ts")}#${declaration}`, where, problems);
    checkMeshdRules(doc, where, problems);
  }
  for (const doc of docs.filter(isCertManager)) checkCertManager(doc, `${doc.kind}/${doc.metadata?.name}`, docs, problems);
  if (docs.some((d) => d.kind === "Deployment") && !kinds.get("PodDisruptionBudget")) problems.push("the coordinator has no PodDisruptionBudget");
  const summary = [...kinds].map(([k, n]) => `${n} ${k}`).join(", ");
  if (problems.length) {
    failed++;
    console.log(`FAIL ${dir} (${summary})`);
    for (const p of problems) console.log(`  ${p}`);
  } else {
    console.log(`ok   ${dir} (${summary})`);
  }
}
if (kustomizations.length === 0) { console.log(`no kustomization.yaml under ${root}`); process.exit(1); }
process.exit(failed ? 1 : 0);
