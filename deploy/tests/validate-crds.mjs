// Validates ServiceMonitor and PrometheusRule objects against the prometheus-operator CRD schemas, as shipped
// by the @kubernetes-models/prometheus-operator package. Input: one JSON object per line on stdin.
// Prints one line per object; exits 1 when any is invalid or of an unknown kind.
// Run by crates/wharf/tests/e2e/deploy.rs next to a node_modules holding that package.
import { ServiceMonitor, PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { ServiceMonitor, PrometheusRule };
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  let failed = false;
  for (const line of input.split("\n").filter(Boolean)) {
    const doc = JSON.parse(line);
    const name = `${doc.kind}/${doc.metadata?.name}`;
    const Kind = kinds[doc.kind];
    if (!Kind) {
      console.log(`no schema for ${name}`);
      failed = true;
      continue;
    }
    try {
      new Kind(doc).validate();
      console.log(`valid ${name}`);
    } catch (e) {
      console.log(`invalid ${name}: ${e.message}`);
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
});
