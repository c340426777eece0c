// check_traces.js SPANS IDS_FILE - requests sent at once, each with its own
// traceparent (trace ids one per line in IDS_FILE), for posts that do not exist
// (so each runs its own statements): the cms answers them in shared read batches,
// and each trace must still be whole and its own - one `cms read` span under its
// server span, every database span of the trace under that read and within its
// time, at least one of them. Prints one "ok"/"FAIL" line per check.
'use strict';
const fs = require('fs');
const [file, idsFile] = process.argv.slice(2);
const spans = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(JSON.parse);
const ids = fs.readFileSync(idsFile, 'utf8').trim().split('\n').filter(Boolean);
const bad = [];
for (const id of ids) {
  const t = spans.filter((s) => s.traceId === id);
  const server = t.filter((s) => s.name === 'cms/get_post' && s.kind === 2);
  const reads = t.filter((s) => s.name === 'cms read');
  const db = t.filter((s) => s.kind === 3 && s.attrs['db.system.name']);
  const why =
    server.length !== 1 ? `${server.length} cms server spans` :
    reads.length !== 1 ? `${reads.length} cms read spans` :
    reads[0].parentSpanId !== server[0].spanId ? 'cms read is not under the server span' :
    db.length === 0 ? 'no database span' :
    !db.every((s) => s.parentSpanId === reads[0].spanId) ? 'a database span is not under its read' :
    !db.every((s) => BigInt(s.startTimeUnixNano) >= BigInt(reads[0].startTimeUnixNano) &&
      BigInt(s.endTimeUnixNano) <= BigInt(reads[0].endTimeUnixNano)) ? 'a database span outside its read' : '';
  if (why) bad.push(`${id}: ${why}`);
}
// No read span may sit under a server span of another trace.
const byId = new Map(spans.map((s) => [s.spanId, s]));
const crossed = spans.filter((s) => s.name === 'cms read' && byId.has(s.parentSpanId) &&
  byId.get(s.parentSpanId).traceId !== s.traceId);
const ok = bad.length === 0 && crossed.length === 0;
console.log(`${ok ? 'ok  ' : 'FAIL'} ${ids.length} concurrent traced reads: each trace whole and its own`);
for (const b of bad.slice(0, 5)) console.log(`     ${b}`);
if (crossed.length) console.log(`     ${crossed.length} read spans under another trace's server span`);
process.exit(ok ? 0 : 1);
