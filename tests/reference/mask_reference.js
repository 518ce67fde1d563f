#!/usr/bin/env node
// Token ids and offsets from Hugging Face's Rust `tokenizers` (the @anush008/tokenizers binding)
// for the response-mask reference (mask_reference.py).
// usage: node mask_reference.js TOKENIZER_JSON TEXTS.jsonl > OUT.jsonl
// Each input line: {"text": "..."}; each output line: {"ids": [...], "offsets": [[begin, end], ...]}
// encoded without special tokens (the chat template writes them); offsets count code points.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules/@anush008/tokenizers'));

async function main() {
  const [tokPath, inPath] = process.argv.slice(2);
  if (!tokPath || !inPath) {
    console.error('usage: node mask_reference.js TOKENIZER_JSON TEXTS.jsonl');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const enc = await tok.encode(JSON.parse(line).text, null, { addSpecialTokens: false });
    out.push(JSON.stringify({ ids: enc.getIds(), offsets: enc.getOffsets() }));
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
