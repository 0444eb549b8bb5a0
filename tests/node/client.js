#!/usr/bin/env node
// Calls fenliu.v1.TriageService from Node, knowing nothing but proto/fenliu/v1/triage.proto.
//
//   node tests/node/client.js HOST:PORT '{"id":"c1","text":"邻居家的排水沟堵了","channel":"VISIT"}' [--trace]
//   node tests/node/client.js HOST:PORT @complaints.json [--trace]     (a JSON list: sent over TriageStream)
//   node tests/node/client.js HOST:PORT --rule-pack
//
// The complaint is given in its JSON form (spec/domain.md: enum values without their proto prefix,
// received_at as ISO 8601). Prints the decision in the same JSON form (deadlines in UTC), or the error
// as {code, message, field_violations, reason, domain}. Exit code: 0 decided, 1 rejected, 2 other failure.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] };

const definition = protoLoader.loadSync('fenliu/v1/triage.proto', LOADER_OPTIONS);
const fenliu = grpc.loadPackageDefinition(definition).fenliu.v1;

// google.rpc.Status and its details, to read the rich error in the grpc-status-details-bin trailer.
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : path.join(PROTO_DIR, target));
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const Status = rpcRoot.lookupType('google.rpc.Status');

// Enum prefixes, read from the proto: CHANNEL_UNSPECIFIED → "CHANNEL_".
function enumPrefix(typeName) {
  const values = definition[`fenliu.v1.${typeName}`].type.value;
  return values.find((v) => v.number === 0).name.replace(/UNSPECIFIED$/, '');
}
function messageFields(typeName) {
  return definition[`fenliu.v1.${typeName}`].type.field;
}
const COMPLAINT_ENUMS = {};
for (const f of messageFields('Complaint')) {
  if (f.type === 'TYPE_ENUM') COMPLAINT_ENUMS[f.name] = enumPrefix(f.typeName.split('.').pop());
}
const DECISION_ENUMS = {};
for (const f of messageFields('Decision')) {
  if (f.type === 'TYPE_ENUM') DECISION_ENUMS[f.name] = enumPrefix(f.typeName.split('.').pop());
}

function toTimestamp(iso) {
  // a timestamp without an offset is banner local time (+08:00)
  const withZone = /([zZ]|[+-]\d\d:?\d\d)$/.test(iso) ? iso : `${iso}+08:00`;
  const ms = Date.parse(withZone);
  if (Number.isNaN(ms)) throw new Error(`received_at is not an ISO 8601 timestamp`);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

function complaintToProto(c) {
  const out = {};
  for (const [key, value] of Object.entries(c)) {
    if (value === null || value === undefined) continue;
    if (key === 'received_at') out.received_at = toTimestamp(value);
    else if (key in COMPLAINT_ENUMS) out[key] = COMPLAINT_ENUMS[key] + value;
    else out[key] = value;
  }
  return out;
}

function fromTimestamp(ts) {
  if (!ts) return null;
  const ms = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
}

function fromValue(v) {
  switch (v.kind) {
    case 'stringValue':
      return v.stringValue;
    case 'numberValue':
      return v.numberValue;
    case 'boolValue':
      return v.boolValue;
    case 'listValue':
      return v.listValue.values.map(fromValue);
    case 'structValue':
      return Object.fromEntries(Object.entries(v.structValue.fields).map(([k, x]) => [k, fromValue(x)]));
    default:
      return null;
  }
}

function stripEnum(field, value) {
  const prefix = DECISION_ENUMS[field];
  return value === `${prefix}UNSPECIFIED` ? null : value.slice(prefix.length);
}

function decisionToJson(d, withTrace) {
  const out = {
    complaint_id: d.complaint_id,
    decision_id: d.decision_id,
    category: d.category,
    excluded: d.excluded,
    exclusion: d.exclusion || null,
    referred_to: d.referred_to || null,
    existing_case_id: d.existing_case_id || null,
    color: stripEnum('color', d.color),
    tier: stripEnum('tier', d.tier),
    approach: stripEnum('approach', d.approach),
    owner_department: d.owner_department,
    co_departments: d.co_departments,
    stage: stripEnum('stage', d.stage),
    path: d.path.map((s) => stripEnum('path', s)),
    statutory_route: d.statutory_route || null,
    deadlines: Object.fromEntries(
      ['first_contact_by', 'plan_by', 'accept_by', 'resolve_by'].map((k) => [k, fromTimestamp(d.deadlines && d.deadlines[k])]),
    ),
    guidance: d.guidance,
    rule_pack: { name: d.rule_pack.name, revision: d.rule_pack.revision, digest: d.rule_pack.digest },
    suggestions: (d.suggestions || []).map((x) => ({ category: x.category, score: x.score })),
  };
  if (withTrace) {
    out.trace = d.trace.map((t) => {
      const e = {
        rule: t.rule,
        stage: t.stage,
        layer: t.layer,
        source: t.source,
        priority: t.priority,
        set: Object.fromEntries(Object.entries(t.set).map(([k, v]) => [k, fromValue(v)])),
      };
      if (Object.keys(t.overruled).length) e.overruled = t.overruled;
      if (t.matched_keywords.length) e.matched_keywords = t.matched_keywords;
      if (t.table_rows.length) e.table_rows = t.table_rows;
      return e;
    });
    out.notes = d.notes;
  }
  return out;
}

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

function statusToJson(st) {
  const out = { code: CODE_NAMES[st.code] || String(st.code), message: st.message };
  for (const any of st.details || []) {
    const typeName = any.type_url.split('/').pop();
    const type = rpcRoot.lookupType(typeName);
    const detail = type.toObject(type.decode(any.value), { defaults: true });
    if (typeName === 'google.rpc.BadRequest') out.field_violations = detail.field_violations.map((v) => ({ field: v.field, description: v.description }));
    if (typeName === 'google.rpc.ErrorInfo') {
      out.reason = detail.reason;
      out.domain = detail.domain;
    }
  }
  return out;
}

function errorToJson(err) {
  const bin = err.metadata && err.metadata.get('grpc-status-details-bin');
  if (bin && bin.length) return statusToJson(Status.toObject(Status.decode(bin[0]), { defaults: true }));
  return { code: CODE_NAMES[err.code] || String(err.code), message: err.details };
}

function readComplaint(arg) {
  if (arg === '-' || arg === undefined) return JSON.parse(fs.readFileSync(0, 'utf8'));
  if (arg.startsWith('@')) return JSON.parse(fs.readFileSync(arg.slice(1), 'utf8'));
  return JSON.parse(arg);
}

function main() {
  const args = process.argv.slice(2);
  const trace = args.includes('--trace');
  const positional = args.filter((a) => !a.startsWith('--'));
  const target = positional[0] || '127.0.0.1:50051';
  const client = new fenliu.TriageService(target, grpc.credentials.createInsecure());
  const deadline = () => new Date(Date.now() + 10000);

  if (args.includes('--rule-pack')) {
    client.GetRulePack({}, { deadline: deadline() }, (err, resp) => {
      if (err) {
        console.log(JSON.stringify(errorToJson(err)));
        process.exitCode = 2;
      } else {
        console.log(JSON.stringify({ name: resp.name, revision: resp.revision, rule_count: resp.rule_count, categories: resp.categories }));
      }
      client.close();
    });
    return;
  }

  const data = readComplaint(positional[1]);
  if (!Array.isArray(data)) {
    client.Triage({ complaint: complaintToProto(data), include_trace: trace }, { deadline: deadline() }, (err, resp) => {
      if (err) {
        const e = errorToJson(err);
        console.log(JSON.stringify(e));
        process.exitCode = e.code === 'INVALID_ARGUMENT' ? 1 : 2;
      } else {
        console.log(JSON.stringify(decisionToJson(resp.decision, trace)));
      }
      client.close();
    });
    return;
  }

  const call = client.TriageStream({ deadline: deadline() });
  call.on('data', (item) => {
    if (item.result === 'decision') {
      console.log(JSON.stringify({ index: Number(item.index), decision: decisionToJson(item.decision, trace) }));
    } else {
      const e = statusToJson(item.error);
      console.log(JSON.stringify({ index: Number(item.index), complaint_id: item.complaint_id, error: e }));
      process.exitCode = Math.max(process.exitCode || 0, e.code === 'INVALID_ARGUMENT' ? 1 : 2);
    }
  });
  call.on('error', (err) => {
    console.log(JSON.stringify(errorToJson(err)));
    process.exitCode = 2;
  });
  call.on('end', () => client.close());
  for (const c of data) call.write({ complaint: complaintToProto(c), include_trace: trace });
  call.end();
}

main();
