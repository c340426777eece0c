// receiver.js - an OTLP/HTTP receiver on 127.0.0.1:4318 for tests/integ/otel_trace.sh.
//
// Every POST /v1/traces body (OTLP/JSON, or OTLP/protobuf: see checkProtobuf) is
// checked against the official generated protobuf types of @opentelemetry/otlp-transformer@0.216.0: the hex ids are turned
// into bytes, the request goes through ExportTraceServiceRequest.fromObject, is
// encoded to protobuf and decoded again, and the result must hold every field of
// the input with the same value - an unknown key, a misspelt one, a wrong type or a
// bad enum makes the round trip differ. Valid spans are appended to OUT as JSON
// lines; problems go to OUT.errors and the POST gets 400.
//
//   node receiver.js OUT [PORT]
'use strict';
const http = require('http');
const fs = require('fs');
const { opentelemetry } = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');

const Req = opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const out = process.argv[2];
const port = Number(process.argv[3] || 4318);
const ID_KEYS = { traceId: 32, spanId: 16, parentSpanId: 16 };

function toBytes(o, path, errs) {
  if (Array.isArray(o)) return o.map((v, i) => toBytes(v, `${path}[${i}]`, errs));
  if (o === null || typeof o !== 'object') return o;
  const r = {};
  for (const [k, v] of Object.entries(o)) {
    if (k in ID_KEYS) {
      if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${ID_KEYS[k]}}$`).test(v))
        errs.push(`${path}.${k}: not ${ID_KEYS[k]} lower-case hex digits: ${JSON.stringify(v)}`);
      r[k] = Buffer.from(String(v), 'hex');
    } else r[k] = toBytes(v, `${path}.${k}`, errs);
  }
  return r;
}

// Every key and value of `want` (the input) must be in `got` (the round trip).
function same(want, got, path, errs) {
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) return errs.push(`${path}: array differs`);
    want.forEach((v, i) => same(v, got[i], `${path}[${i}]`, errs));
    return;
  }
  if (want !== null && typeof want === 'object') {
    if (got === null || typeof got !== 'object') return errs.push(`${path}: not an object after decoding`);
    for (const [k, v] of Object.entries(want)) {
      if (!(k in got)) { errs.push(`${path}.${k}: not a field of the schema (or empty)`); continue; }
      same(v, got[k], `${path}.${k}`, errs);
    }
    return;
  }
  if (String(want) !== String(got)) errs.push(`${path}: ${JSON.stringify(want)} became ${JSON.stringify(got)}`);
}

function check(body) {
  const errs = [];
  let json;
  try { json = JSON.parse(body); } catch (e) { return { errs: [`not JSON: ${e.message}`] }; }
  const converted = toBytes(json, '$', errs);
  const msg = Req.decode(Req.encode(Req.fromObject(converted)).finish());
  const back = Req.toObject(msg, { longs: String, enums: Number, bytes: Array, defaults: false });
  // Compare with ids as hex again.
  const hexed = JSON.parse(JSON.stringify(back, (k, v) =>
    k in ID_KEYS && Array.isArray(v) ? Buffer.from(v).toString('hex') : v));
  same(json, hexed, '$', errs);
  for (const rs of json.resourceSpans || []) {
    const res = {};
    for (const a of (rs.resource || {}).attributes || []) res[a.key] = Object.values(a.value)[0];
    if (!res['service.name']) errs.push('resource without service.name');
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || []) {
        if (![1, 2, 3, 4, 5].includes(s.kind)) errs.push(`span ${s.name}: kind ${s.kind}`);
        if (!(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano))) errs.push(`span ${s.name}: ends before it starts`);
      }
  }
  return { errs, json };
}

// An OTLP/protobuf body: decoded with the official types (a malformed one
// throws), encoded again, which must give the same bytes (fields in order, the
// right wire types, nothing unknown), then turned into the OTLP/JSON shape (hex
// ids, 64-bit integers as strings, enums as numbers) and checked like a JSON body.
function checkProtobuf(body) {
  let msg;
  try { msg = Req.decode(body); } catch (e) { return { errs: [`not an ExportTraceServiceRequest: ${e.message}`] }; }
  const again = Buffer.from(Req.encode(msg).finish());
  if (!again.equals(body)) {
    let i = 0;
    while (i < body.length && body[i] === again[i]) i++;
    return { errs: [`protobuf differs from its re-encoding at byte ${i} of ${body.length}`] };
  }
  const obj = Req.toObject(msg, { longs: String, enums: Number, bytes: Array, defaults: false });
  const hexed = JSON.stringify(obj, (k, v) =>
    k in ID_KEYS && Array.isArray(v) ? Buffer.from(v).toString('hex') : v);
  return check(hexed);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') { res.writeHead(404); return res.end(); }
    const ctype = String(req.headers['content-type']);
    let checked;
    if (ctype.startsWith('application/json')) checked = check(Buffer.concat(chunks).toString('utf8'));
    else if (ctype.startsWith('application/x-protobuf')) checked = checkProtobuf(Buffer.concat(chunks));
    else {
      fs.appendFileSync(out + '.errors', `content-type ${req.headers['content-type']}\n`);
      res.writeHead(415); return res.end();
    }
    fs.appendFileSync(out + '.types', ctype + '\n');
    const { errs, json } = checked;
    if (errs.length) {
      fs.appendFileSync(out + '.errors', errs.join('\n') + '\n');
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end('{}');
    }
    const lines = [];
    for (const rs of json.resourceSpans) {
      const res0 = {};
      for (const a of rs.resource.attributes) res0[a.key] = Object.values(a.value)[0];
      for (const ss of rs.scopeSpans)
        for (const s of ss.spans) {
          const attrs = {};
          for (const a of s.attributes || []) attrs[a.key] = Object.values(a.value)[0];
          lines.push(JSON.stringify({ service: res0['service.name'], traceId: s.traceId, spanId: s.spanId,
            parentSpanId: s.parentSpanId || '', name: s.name, kind: s.kind, status: s.status, attrs,
            startTimeUnixNano: s.startTimeUnixNano, endTimeUnixNano: s.endTimeUnixNano }));
        }
    }
    fs.appendFileSync(out, lines.map((l) => l + '\n').join(''));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
}).listen(port, '127.0.0.1', () => console.log('listening'));
