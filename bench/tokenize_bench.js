// The peer of bench/tokenize_bench.cpp: Hugging Face's Rust `tokenizers` (the npm package
// @anush008/tokenizers, installed by `npm ci --prefix tests/reference`) encoding the same JSONL
// corpus. bench/run_tokenize.sh runs both side by side.
//
//   node bench/tokenize_bench.js --tokenizer DIR --corpus FILE.jsonl --mode single|lines|batch
//        [--reps N] [--chunk LINES] [--special]
//
// Modes (each the best of --reps passes after one warm-up pass; MB/s = corpus UTF-8 bytes / 1e6):
//   single: encodeBatch over chunks of --chunk lines, run with RAYON_NUM_THREADS=1 (the driver
//           sets it; Rust's batch loop then runs on one thread, the fastest single-threaded path
//           the binding has: one call per chunk instead of one per line);
//   lines:  encode() line by line, awaiting each (one Rust call per line, one thread busy at a
//           time; includes Node's per-call overhead);
//   batch:  encodeBatch over chunks with Rust's rayon pool on all cores.
// Only the encode calls are timed; the ids are read back (getIds) after the clock stops, for the
// count and checksum the driver compares with tune's.
'use strict';
const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const o = { reps: 3, chunk: 1000, special: false, mode: 'single' };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '--tokenizer') o.tokenizer = argv[++i];
    else if (a === '--corpus') o.corpus = argv[++i];
    else if (a === '--mode') o.mode = argv[++i];
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--chunk') o.chunk = Number(argv[++i]);
    else if (a === '--special') o.special = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.tokenizer || !o.corpus) throw new Error('--tokenizer and --corpus are required');
  return o;
}

function sums(encodings) {
  let ids = 0;
  let checksum = 0;
  for (const e of encodings) {
    const v = e.getIds();
    ids += v.length;
    for (const id of v) checksum = (Math.imul(checksum, 31) + id) >>> 0;
  }
  return { ids, checksum };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const ref = path.join(__dirname, '..', 'tests', 'reference', 'node_modules', '@anush008', 'tokenizers');
  const { Tokenizer } = require(ref);
  const file = fs.statSync(o.tokenizer).isDirectory() ? path.join(o.tokenizer, 'tokenizer.json') : o.tokenizer;
  const t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(file);
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;

  const texts = fs.readFileSync(o.corpus, 'utf8').split('\n').filter((l) => l.length > 0)
    .map((l) => JSON.parse(l).text);
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);
  const chunks = [];
  for (let i = 0; i < texts.length; i += o.chunk) chunks.push(texts.slice(i, i + o.chunk));
  const opts = { addSpecialTokens: o.special };

  let best = Infinity;
  let result;
  for (let r = 0; r <= o.reps; ++r) {
    const encodings = [];
    const t = process.hrtime.bigint();
    if (o.mode === 'lines') {
      for (const text of texts) encodings.push(await tok.encode(text, null, opts));
    } else {
      for (const c of chunks) encodings.push(...(await tok.encodeBatch(c, opts)));
    }
    const dt = Number(process.hrtime.bigint() - t) / 1e9;
    if (r > 0) best = Math.min(best, dt);  // pass 0 warms up
    if (r === o.reps) result = sums(encodings);
  }
  console.log(JSON.stringify({
    impl: 'rust', mode: o.mode, threads: o.mode === 'batch' ? (Number(process.env.RAYON_NUM_THREADS) || require('os').cpus().length) : 1,
    lines: texts.length, bytes, ids: result.ids, checksum: result.checksum, best_s: best,
    mb_per_s: bytes / best / 1e6, load_s: loadS, reps: o.reps,
  }));
}

main().catch((e) => {
  console.error(`tokenize_bench.js: ${e.message || e}`);
  process.exit(1);
});
