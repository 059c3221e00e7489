// Runs every audit of the graphql-http package against the server at argv[2] and fails
// (exit 1) when any MUST audit fails. SHOULD/MAY results are printed for information.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs http://127.0.0.1:PORT/graphql');
  process.exit(2);
}
const results = await auditServer({ url });
const by = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const r of results) {
  by[r.status]++;
  if (r.status !== 'ok') console.log(`${r.status.toUpperCase()} ${r.id} ${r.name} -> ${r.reason}`);
}
console.log(`graphql-http audit: ${results.length} audits: ${by.ok} ok, ${by.notice} notice, ${by.warn} warn, ${by.error} error (MUST failures)`);
process.exit(by.error ? 1 : 0);
