#!/usr/bin/env node
// Reference ids from Hugging Face's Rust `tokenizers` (the @anush008/tokenizers Node binding).
// usage: node encode_reference.js TOKENIZER_JSON TEXTS.jsonl > EXPECTED.jsonl
// Each input line: {"text": "...", "add_special_tokens": true|false (default true)}.
// Each output line, in input order:
//   {"text", "add_special_tokens", "ids": [...], "decoded": decode(ids), "decoded_skip": decode(ids, skip special)}
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules/@anush008/tokenizers'));

async function main() {
  const [tokPath, inPath] = process.argv.slice(2);
  if (!tokPath || !inPath) {
    console.error('usage: node encode_reference.js TOKENIZER_JSON TEXTS.jsonl');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const item = JSON.parse(line);
    const add = item.add_special_tokens !== false;
    const enc = await tok.encode(item.text, null, { addSpecialTokens: add });
    const ids = enc.getIds();
    const decoded = await tok.decode(ids, false);
    const decodedSkip = await tok.decode(ids, true);
    out.push(JSON.stringify({ text: item.text, add_special_tokens: add, ids, decoded,
                              decoded_skip: decodedSkip }));
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
