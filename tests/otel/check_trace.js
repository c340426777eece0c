// check_trace.js SPANS TRACE_ID - the request sent with traceparent TRACE_ID made one
// trace: HTTP server span (front) -> cms/get_post client span (front) -> cms/get_post
// server span (cms) -> cms read (cms reader) -> database spans (cms). Prints one "ok"/"FAIL" line per check.
'use strict';
const fs = require('fs');
const [file, traceId, badPath] = process.argv.slice(2);
const spans = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(JSON.parse);
let failed = 0;
const check = (name, cond) => { console.log(`${cond ? 'ok  ' : 'FAIL'} ${name}`); if (!cond) failed++; };
const t = spans.filter((s) => s.traceId === traceId);
const httpSpan = t.find((s) => s.name === 'GET /post/:slug' && s.kind === 2);
check('HTTP server span on the front node, parented by the incoming traceparent',
  httpSpan && httpSpan.service === 'front' && httpSpan.parentSpanId === '00f067aa0ba902b7' &&
  httpSpan.attrs['http.route'] === '/post/:slug' && httpSpan.attrs['http.response.status_code'] === '200');
const client = t.find((s) => s.name === 'cms/get_post' && s.kind === 3);
check('RPC client span is a child of the HTTP span', client && httpSpan && client.parentSpanId === httpSpan.spanId &&
  client.attrs['rpc.method'] === 'get_post' && client.attrs['server.address'] === 'cms@127.0.0.1');
const server = t.find((s) => s.name === 'cms/get_post' && s.kind === 2);
check('RPC server span on the cms node is a child of the client span (across nodes)',
  server && client && server.service === 'cms' && server.parentSpanId === client.spanId);
// Reads are answered by a reader process: its `cms read` span sits between the
// server span and the statements (timed on the blocking pool).
const read = t.find((s) => s.name === 'cms read' && s.kind === 1);
check('the reader\'s `cms read` span is a child of the server span',
  read && server && read.service === 'cms' && read.parentSpanId === server.spanId &&
  read.attrs['rpc.method'] === 'get_post');
const db = t.filter((s) => s.kind === 3 && s.attrs['db.system.name'] === 'sqlite');
check('database spans on the cms node are children of the read, within its time',
  db.length > 0 && read && db.every((s) => s.parentSpanId === read.spanId && s.service === 'cms' &&
    BigInt(s.startTimeUnixNano) >= BigInt(read.startTimeUnixNano) &&
    BigInt(s.endTimeUnixNano) <= BigInt(read.endTimeUnixNano)));
check('database span names and attributes follow the conventions',
  db.some((s) => s.name === 'SELECT sqlite' && s.attrs['db.operation.name'] === 'SELECT' && s.attrs['db.query.text']));
const bad = spans.filter((s) => s.attrs['url.path'] === badPath);
check('a malformed traceparent starts a new root trace', bad.length === 1 && bad[0].parentSpanId === '' &&
  bad[0].traceId !== traceId);
console.log(`${spans.length} spans received, ${t.length} in the trace`);
process.exit(failed ? 1 : 0);
