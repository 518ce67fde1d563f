// The reference side of compare_tokenizers.py: Hugging Face's Rust `tokenizers` (the npm package
// @anush008/tokenizers) encodes and decodes a JSONL file.
//
//   node compare_reference.js TOKENIZER.json IN.jsonl OUT.jsonl
//
// IN: lines {"text": ..., "add_special_tokens": bool}; OUT: one line per input line, in order,
// {"ids": [...], "decoded": decode(ids, skip=false), "decoded_skip": decode(ids, skip=true)},
// or {"error": message} where Rust refuses the input.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('@anush008/tokenizers');

async function main() {
  const [tokenizerFile, inFile, outFile] = process.argv.slice(2);
  if (!outFile) {
    console.error('usage: node compare_reference.js TOKENIZER.json IN.jsonl OUT.jsonl');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokenizerFile);
  const lines = fs.readFileSync(inFile, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = new Array(lines.length);
  // The binding runs each call on libuv's pool; a few in flight keep it busy, in input order.
  const width = 8;
  for (let i = 0; i < lines.length; i += width) {
    const batch = lines.slice(i, i + width).map(async (line, k) => {
      const { text, add_special_tokens: add } = JSON.parse(line);
      try {
        const enc = await tok.encode(text, null, { addSpecialTokens: add !== false });
        const ids = enc.getIds();
        const decoded = await tok.decode(ids, false);
        const decodedSkip = await tok.decode(ids, true);
        out[i + k] = JSON.stringify({ ids, decoded, decoded_skip: decodedSkip });
      } catch (e) {
        out[i + k] = JSON.stringify({ error: String(e.message || e) });
      }
    });
    await Promise.all(batch);
  }
  fs.writeFileSync(outFile, out.join('\n') + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
