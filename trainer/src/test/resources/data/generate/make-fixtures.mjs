// Writes the parquet and JSONL fixtures of the parent folder.
//
//   npm install --no-package-lock && node make-fixtures.mjs
//
// Each parquet file is an Arrow table built with apache-arrow (explicit schema and types, real
// nulls), handed to parquet-wasm (arrow-rs) through an Arrow IPC stream and written with
// SNAPPY compression and otherwise default writer properties (dictionary encoding on, standard
// 3-level LIST encoding). Each file is read back with parquet-wasm and printed.
import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import {
  Field,
  Int64,
  List,
  Map_,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  makeData,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} from "apache-arrow";

const require = createRequire(import.meta.url);
// The node build of parquet-wasm loads its WebAssembly module synchronously on require.
const pw = require("parquet-wasm/node");

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..");

// ---------------------------------------------------------------------------------------------
// The three problems.
const Q = ["What is 17 + 25?", "What is 8 + 13?", "What is 30 + 44?"];
const G = ["42", "21", "74"];
const AB = [
  [17, 25],
  [8, 13],
  [30, 44],
];
const SYS = "You are a careful calculator. Put the final answer in \\boxed{}.";

// ---------------------------------------------------------------------------------------------
// Types. Every field is nullable, as pyarrow infers from Python dicts; the list item field is
// named "element", as pyarrow writes it to parquet (arrow-rs takes the name from the Arrow field).
const utf8 = () => new Utf8();
const f = (name, type, nullable = true) => new Field(name, type, nullable);
const struct = (...fields) => new Struct(fields);
const listOf = (type) => new List(f("element", type));

const messageRC = struct(f("role", utf8()), f("content", utf8()));
const messageCR = struct(f("content", utf8()), f("role", utf8()));
const stringMap = new Map_(
  f("entries", struct(f("key", utf8(), false), f("value", utf8())), false),
  false,
);
// apache-arrow names the map's entries field "entries"; pyarrow writes the repeated group of a
// parquet MAP as "key_value", and arrow-rs takes the name from the Arrow field, so rename it.
stringMap.children[0].name = "key_value";

const verlFields = [
  f("data_source", utf8()),
  f("prompt", listOf(messageRC)),
  f("ability", utf8()),
  f("reward_model", struct(f("style", utf8()), f("ground_truth", utf8()))),
  f(
    "extra_info",
    struct(f("split", utf8()), f("index", new Int64()), f("answer", utf8()), f("question", utf8())),
  ),
];
const verlSchema = new Schema(verlFields);
const mapNullSchema = new Schema([...verlFields, f("meta", stringMap)]);
const dapoSchema = new Schema([
  f("data_source", utf8()),
  f("prompt", listOf(messageCR)),
  f("ability", utf8()),
  f("reward_model", struct(f("ground_truth", utf8()), f("style", utf8()))),
  f("extra_info", struct(f("index", utf8()))),
]);
const trlSchema = new Schema([f("prompt", listOf(messageRC)), f("solution", utf8())]);
const gsm8kSchema = new Schema([f("question", utf8()), f("answer", utf8())]);
const mathSchema = new Schema([
  f("problem", utf8()),
  f("level", utf8()),
  f("type", utf8()),
  f("solution", utf8()),
]);

// ---------------------------------------------------------------------------------------------
// Rows, as plain objects in column order (the JSONL twins are these objects, JSON.stringify'd).
const verlRow = (i, prompt) => ({
  data_source: "klrl/arith",
  prompt,
  ability: "math",
  reward_model: { style: "rule", ground_truth: G[i] },
  extra_info: { split: "train", index: i, answer: G[i], question: Q[i] },
});
const idx = [0, 1, 2];

const verl = idx.map((i) => verlRow(i, [{ role: "user", content: Q[i] }]));
const verlSystem = idx.map((i) =>
  verlRow(i, [
    { role: "system", content: SYS },
    { role: "user", content: Q[i] },
  ]),
);
const dapo = idx.map((i) => ({
  data_source: "klrl/arith",
  prompt: [{ content: Q[i], role: "user" }],
  ability: "math",
  reward_model: { ground_truth: G[i], style: "rule" },
  extra_info: { index: `a${i + 1}` },
}));
const trl = idx.map((i) => ({ prompt: [{ role: "user", content: Q[i] }], solution: G[i] }));
const trlStandard = idx.map((i) => ({ prompt: Q[i], solution: G[i] }));
const metas = [{ source: "synthetic", grade: "2" }, {}, null];
const mapNull = idx.map((i) => ({
  ...verl[i],
  extra_info: i === 1 ? null : verl[i].extra_info,
  meta: metas[i],
}));
const nullAnswer = idx.map((i) =>
  i === 1 ? { ...verl[i], reward_model: { style: "rule", ground_truth: null } } : verl[i],
);
const gsm8k = idx.map((i) => {
  const [a, b] = AB[i];
  return { question: Q[i], answer: `${a} + ${b} = <<${a}+${b}=${G[i]}>>${G[i]}\n#### ${G[i]}` };
});
const math = idx.map((i) => {
  const [a, b] = AB[i];
  return {
    problem: Q[i],
    level: "Level 1",
    type: "Prealgebra",
    solution: `${a} + ${b} = ${G[i]}, so the answer is $\\boxed{${G[i]}}$.`,
  };
});
const messages = idx.map((i) => ({
  messages: [
    { role: "user", content: Q[i] },
    { role: "assistant", content: `The answer is \\boxed{${G[i]}}.` },
  ],
}));

// ---------------------------------------------------------------------------------------------
// Writing.
const written = [];

function writeJsonl(name, rows) {
  const path = join(out, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  written.push(path);
}

// Converts a plain value to what the apache-arrow builder of `type` takes (int64 as BigInt).
function toArrow(value, type) {
  if (value === null || value === undefined) return null;
  if (type instanceof Int64) return BigInt(value);
  if (type instanceof List) return value.map((v) => toArrow(v, type.children[0].type));
  if (type instanceof Map_) {
    const valueType = type.children[0].type.children[1].type;
    return new Map(Object.entries(value).map(([k, v]) => [k, toArrow(v, valueType)]));
  }
  if (type instanceof Struct) {
    const o = {};
    for (const c of type.children) o[c.name] = toArrow(value[c.name], c.type);
    return o;
  }
  return value;
}

function arrowTable(schema, rows) {
  const children = schema.fields.map((field) => {
    const vector = vectorFromArray(
      rows.map((r) => toArrow(r[field.name], field.type)),
      field.type,
    );
    if (vector.data.length !== 1) throw new Error(`${field.name}: ${vector.data.length} chunks`);
    return vector.data[0];
  });
  const data = makeData({
    type: new Struct(schema.fields),
    length: rows.length,
    nullCount: 0,
    children,
  });
  return new Table([new RecordBatch(schema, data)]);
}

function writeParquetFile(name, schema, rows) {
  const table = arrowTable(schema, rows);
  const wasmTable = pw.Table.fromIPCStream(tableToIPC(table, "stream"));
  const props = new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).build();
  const bytes = pw.writeParquet(wasmTable, props);
  const path = join(out, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  written.push(path);
}

function fixture(base, schema, rows) {
  writeParquetFile(`${base}.parquet`, schema, rows);
  writeJsonl(`${base}.jsonl`, rows);
}

fixture("verl", verlSchema, verl);
fixture("dapo", dapoSchema, dapo);
fixture("verl-system", verlSchema, verlSystem);
writeParquetFile("shards/train-00000-of-00002.parquet", verlSchema, verl.slice(0, 2));
writeParquetFile("shards/train-00001-of-00002.parquet", verlSchema, verl.slice(2));
writeJsonl("shards-jsonl/train-00000-of-00002.jsonl", verl.slice(0, 2));
writeJsonl("shards-jsonl/train-00001-of-00002.jsonl", verl.slice(2));
fixture("trl", trlSchema, trl);
writeJsonl("trl-standard.jsonl", trlStandard);
fixture("map-null", mapNullSchema, mapNull);
fixture("null-answer", verlSchema, nullAnswer);
fixture("gsm8k", gsm8kSchema, gsm8k);
fixture("math", mathSchema, math);
writeJsonl("messages.jsonl", messages);

// ---------------------------------------------------------------------------------------------
// Read back every parquet file with parquet-wasm and print its schema and rows; check the rows
// equal the JSONL twin (for the shards: the matching file of shards-jsonl/).
const plain = (v) => {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (v && typeof v.toJSON === "function" && !(v instanceof Date)) return plain(v.toJSON());
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
};

let failures = 0;
for (const path of written.filter((p) => p.endsWith(".parquet"))) {
  const name = relative(out, path);
  const table = tableFromIPC(pw.readParquet(readFileSync(path)).intoIPCStream());
  console.log(`== ${name} (${readFileSync(path).length} bytes, ${table.numRows} rows)`);
  for (const field of table.schema.fields) console.log(`  ${field.name}: ${field.type}`);
  const rows = table.toArray().map((r) => plain(r));
  for (const r of rows) console.log(`  ${JSON.stringify(r)}`);
  const twin = name.replace(/^shards\//, "shards-jsonl/").replace(/\.parquet$/, ".jsonl");
  const expected = readFileSync(join(out, twin), "utf8").trimEnd().split("\n");
  const got = rows.map((r) => JSON.stringify(r));
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    failures++;
    console.log(`  MISMATCH with ${twin}`);
  }
}
console.log(`wrote ${written.length} files into ${out}`);
if (failures) {
  console.error(`${failures} parquet file(s) differ from their JSONL twins`);
  process.exit(1);
}
