// Validates every kustomization under deploy/k8s offline, as the API server would on apply:
//   1. `kustomize build` renders it (a broken patch or missing resource fails here);
//   2. each object is checked against Kubernetes' OpenAPI schema for its apiVersion/kind
//      (kubernetes-models: types, required fields, enums, formats);
//   3. each field must exist in that schema (the API server's strict field validation): a typo
//      such as `nodeSelecter` is an error, not silently dropped;
//   4. meshd's own rules: the probes are native gRPC probes, the coordinator has a PDB, the agent
//      gets NODE_NAME from the Downward API and mounts /run/meshd, containers set resources and
//      run as non-root.
// Usage: node validate.mjs <deploy/k8s dir>     Exit 0 when all pass; prints every problem.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import yaml from "js-yaml";

const require = createRequire(import.meta.url);
const modelsDir = dirname(require.resolve("kubernetes-models/package.json"));
const apimachineryDir = dirname(require.resolve("@kubernetes-models/apimachinery/package.json"));
const kustomize = join(dirname(require.resolve("kustomize/package.json")), "run.js");

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
  const meshd = spec.containers.filter((c) => (c.args ?? [])[0] === "coordinator" || (c.args ?? [])[0] === "agent");
  for (const c of meshd) {
    for (const probe of ["livenessProbe", "readinessProbe"]) {
      if (!c[probe]?.grpc?.port) problems.push(`${where} ${c.name}: ${probe} must be a native gRPC probe`);
    }
    if (c.args[0] === "agent") {
      const node = (c.env ?? []).find((e) => e.name === "MESHD_NODE_NAME");
      if (node?.valueFrom?.fieldRef?.fieldPath !== "spec.nodeName") problems.push(`${where}: MESHD_NODE_NAME must come from spec.nodeName`);
      if (!(c.volumeMounts ?? []).some((m) => m.mountPath === "/run/meshd")) problems.push(`${where}: agent must mount /run/meshd`);
    }
  }
}

// ---- run ----
const root = process.argv[2];
if (!root || !existsSync(root)) { console.error("usage: node validate.mjs <deploy/k8s dir>"); process.exit(2); }
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
  for (const doc of docs) {
    const where = `${doc.kind}/${doc.metadata?.name}`;
    kinds.set(doc.kind, (kinds.get(doc.kind) ?? 0) + 1);
    const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : [null, doc.apiVersion];
    const modelPath = join(modelsDir, group ?? "", version, `${doc.kind}.js`);
    if (!existsSync(modelPath)) { problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`); continue; }
    const Model = require(modelPath)[doc.kind];
    try { new Model(doc).validate(); } catch (e) { problems.push(`${where}: ${e.message}`); }
    const declaration = readFileSync(modelPath.replace(/\.js$/, ".d.ts"), "utf8").match(/export interface (\w+)/)[1];
    checkFields(doc, `${modelPath.replace(/\.js$/, ".d.ts")}#${declaration}`, where, problems);
    checkMeshdRules(doc, where, problems);
  }
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
