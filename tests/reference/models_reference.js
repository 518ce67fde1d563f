// Expected ids for the WordPiece and Unigram models (tests/unit/tokenizer_models_test.cpp), from
// Hugging Face's Rust `tokenizers` (0.22, as the npm package @anush008/tokenizers).
//
// Regenerate (the outputs are committed, so the C++ tests need no node):
//   cd tests/reference && npm ci && node models_reference.js
// writes tokenizer_expected/models_wordpiece.json and tokenizer_expected/models_unigram.json.
//
// Each model is wrapped in a tokenizer.json with no normalizer, pre-tokenizer, post-processor or
// added tokens, so encoding a string runs the model on exactly that string: the expected ids of a
// piece are what TokenModel::tokenize must give for it. A case records, per model:
//   pieces: [{piece, ids} | {piece, error}]   (error: Rust failed to encode that piece)
//   token_to_id: [[token, id|null]], id_to_token: [[id, token|null]], vocab_size
// and `malformed` lists models that Rust refuses to load: [{name, model_json, error}]; model_json
// is the raw text, since some cases (5.0, duplicate keys) do not survive JSON.stringify.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('@anush008/tokenizers');

function tokenizerJson(modelJson) {
  return `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,` +
         `"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":${modelJson}}`;
}

async function runCase(c) {
  const modelJson = JSON.stringify(c.model);
  const tok = Tokenizer.fromString(tokenizerJson(modelJson));
  const pieces = [];
  for (const piece of c.pieces) {
    try {
      const enc = await tok.encode(piece, null, { addSpecialTokens: false });
      pieces.push({ piece, ids: enc.getIds() });
    } catch (e) {
      pieces.push({ piece, error: String(e.message || e) });
    }
  }
  const out = { name: c.name, model: c.model, pieces };
  out.token_to_id = (c.tokens || []).map((t) => [t, tok.tokenToId(t) ?? null]);
  out.id_to_token = (c.ids || []).map((i) => [i, tok.idToToken(i) ?? null]);
  // The binding counts distinct tokens; Rust's Model::get_vocab_size counts entries. They agree
  // unless pieces repeat, so such cases leave vocab_size out.
  if (!c.duplicate_pieces) out.vocab_size = tok.getVocabSize(false);
  return out;
}

function malformed(cases) {
  return cases.map(([name, modelJson]) => {
    try {
      Tokenizer.fromString(tokenizerJson(modelJson));
      throw new Error(`reference loaded malformed case ${name}`);
    } catch (e) {
      if (String(e.message).startsWith('reference loaded')) throw e;
      return { name, model_json: modelJson, error: String(e.message || e) };
    }
  });
}

// --- WordPiece ------------------------------------------------------------------------------

const bertVocab = {};
['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'the', 'un', '##aff', '##able', 'aff', 'able', 'a', '##a',
 'b', '##b', 'play', '##ing', '##s', '##ed', 'run', 'runn', '##n', '##ning', 'caf', '##é', 'é',
 '日本', '##語', '語', '##', '###', '#', 'hello', '##😀', '😀', 'x', '##y', '##yz',
 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']
  .forEach((t, i) => { bertVocab[t] = i; });

const wordpieceCases = [
  {
    name: 'bert_like',
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##',
             max_input_chars_per_word: 100, vocab: bertVocab },
    pieces: ['the', 'unaffable', 'affable', 'playing', 'plays', 'played', 'running', 'runs',
             'xyz', 'xy', 'x', 'playx', 'zzz', 'café', 'cafe', 'é', 'éé', '日本語', '語日', '日本',
             '😀', '😀😀', 'hello😀', 'a#', '##', '###', '#', 'a##', 'ab', 'ba', 'abab',
             'a'.repeat(99), 'a'.repeat(100), 'a'.repeat(101), 'a'.repeat(114),
             'é'.repeat(100), 'é'.repeat(101), '[UNK]', '[CLS]', 'THE', ''],
    tokens: ['the', '##ing', '[UNK]', 'missing', '', '##', '😀'],
    ids: [0, 1, 4, 6, 26, 38, 39, 1000, -1],
  },
  {
    name: 'prefix_and_limit',
    model: { type: 'WordPiece', unk_token: '<unk>', continuing_subword_prefix: '@@',
             max_input_chars_per_word: 5,
             vocab: { '<unk>': 0, 'a': 1, '@@a': 2, 'é': 3, '@@é': 4, 'aaaaaa': 5, 'ab': 6,
                      '@@b': 7, '##b': 8, 'b': 9, '@@': 10 } },
    pieces: ['a', 'aa', 'aaaaa', 'aaaaaa', 'aaaaaaa', 'ééééé', 'éééééé', 'aéaéa', 'ab', 'abb',
             'bb', 'a@@', 'a##b', 'c'],
    tokens: ['@@a', '##b', '<unk>'],
    ids: [0, 2, 10, 11],
  },
  {
    name: 'empty_prefix',
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '',
             max_input_chars_per_word: 100, vocab: { '[UNK]': 0, 'ab': 1, 'a': 2, 'b': 3, 'c': 4 } },
    pieces: ['abc', 'cab', 'abd', 'bbb'],
  },
  {
    name: 'zero_max_chars',
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##',
             max_input_chars_per_word: 0, vocab: { '[UNK]': 0, 'a': 1 } },
    pieces: ['a', ''],
  },
  {
    // Rust loads a vocabulary without its unk token; encoding fails only when a word needs it.
    name: 'unk_not_in_vocab',
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##',
             max_input_chars_per_word: 3, vocab: { 'a': 0, '##b': 1 } },
    pieces: ['ab', 'abb', 'b', 'abbb'],
    tokens: ['[UNK]'],
  },
  {
    // Ids need not be contiguous or start at 0; vocab_size counts entries.
    name: 'sparse_ids',
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##',
             max_input_chars_per_word: 100, vocab: { '[UNK]': 7, 'a': 100, '##b': 3 } },
    pieces: ['ab', 'ba'],
    ids: [0, 3, 7, 100, 101],
  },
];

const wpBase = '"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",' +
               '"max_input_chars_per_word":100';
const wordpieceMalformed = [
  ['missing_vocab', `{${wpBase}}`],
  ['missing_unk_token', '{"type":"WordPiece","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{}}'],
  ['missing_prefix', '{"type":"WordPiece","unk_token":"[UNK]","max_input_chars_per_word":100,"vocab":{}}'],
  ['missing_max_chars', '{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","vocab":{}}'],
  ['vocab_is_list', `{${wpBase},"vocab":[["a",0]]}`],
  ['vocab_negative_id', `{${wpBase},"vocab":{"a":-1}}`],
  ['vocab_float_id', `{${wpBase},"vocab":{"a":1.5}}`],
  ['vocab_string_id', `{${wpBase},"vocab":{"a":"1"}}`],
  ['unk_token_number', '{"type":"WordPiece","unk_token":3,"continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{}}'],
  ['prefix_null', '{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":null,"max_input_chars_per_word":100,"vocab":{}}'],
  ['max_chars_negative', '{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":-1,"vocab":{}}'],
  ['max_chars_float', '{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":5.0,"vocab":{}}'],
  ['max_chars_string', '{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":"5","vocab":{}}'],
];

// --- Unigram --------------------------------------------------------------------------------

// T5/XLNet-like: "▁" word starts, pieces whose scores make the Viterbi choice close.
const t5Vocab = [
  ['<unk>', 0.0], ['<pad>', 0.0], ['</s>', 0.0], ['▁', -2.0], ['▁the', -3.0], ['▁a', -3.5],
  ['a', -4.0], ['b', -4.0], ['ab', -8.0],           // ab = a + b exactly: the tie goes to "ab"
  ['c', -0.75], ['d', -0.75], ['cd', -1.5],         // dyadic tie again
  ['e', -0.5], ['f', -0.5], ['ef', -1.0000000000000002],  // one ulp worse: e + f wins
  ['g', -0.5], ['h', -0.5], ['gh', -0.9999999999999999],  // one ulp better: gh wins
  ['abc', -9.0], ['bc', -4.5], ['abcd', -13.0],
  ['▁hello', -5.0], ['▁hell', -4.0], ['o', -1.5], ['▁he', -3.0], ['llo', -3.2], ['l', -3.0],
  ['ll', -4.1], ['▁wor', -6.0], ['ld', -4.0], ['▁world', -10.1], ['w', -5.0], ['r', -5.0],
  ['é', -5.5], ['日本', -6.0], ['日', -6.5], ['本', -6.5], ['語', -7.0],
  ['', -1.0],                                        // never matched (the trie needs a byte)
  ['xx', -1.0],                                      // "x" alone is unknown
];

// Llama-style byte fallback: <0x00>..<0xFF> are all there, after a few specials.
function byteVocab() {
  const v = [['<unk>', 0.0], ['<s>', 0.0], ['</s>', 0.0]];
  for (let b = 0; b < 256; ++b) v.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0.0]);
  v.push(['▁', -1.0], ['a', -2.0], ['b', -2.0], ['▁ab', -3.0], ['é', -4.0], ['€', -5.0]);
  return v;
}

// Only the bytes of € (E2 82 AC) and of 😀 (F0 9F 98 80), and C3 but not BC (ü is C3 BC).
const partialByteVocab = [
  ['<unk>', 0.0], ['a', -1.0], ['b', -1.0], ['<0xE2>', -10.0], ['<0x82>', -10.0],
  ['<0xAC>', -10.0], ['<0xF0>', -10.0], ['<0x9F>', -10.0], ['<0x98>', -10.0], ['<0x80>', -10.0],
  ['<0xC3>', -10.0],
];

const hardPieces = ['', 'a', 'b', 'ab', 'abab', 'abc', 'abcd', 'cd', 'cdcd', 'ef', 'gh', 'efgh',
  '▁the', '▁hello', '▁hello▁world', '▁world', 'hello', 'x', 'xx', 'xxx', 'axb', 'axyzb', 'ü',
  'aüb', '€', '€😀', 'a€😀b', 'aü€b', '日本語', '日本人', '本日', '<unk>', '<unk>x', 'x<unk>',
  '<unk><unk>', '▁a▁b', 'é', 'éé', '\u0301', 'e\u0301', '  ', '\n', '🏳️‍🌈'];

const unigramCases = [
  {
    name: 't5_like', model: { type: 'Unigram', unk_id: 0, vocab: t5Vocab },
    pieces: hardPieces,
    tokens: ['<unk>', '▁the', 'ab', '', 'xx', 'x', 'missing'],
    ids: [0, 3, 8, 41, 42, 43, 1000, -1],
  },
  {
    name: 't5_like_byte_fallback_without_byte_pieces',
    model: { type: 'Unigram', unk_id: 0, vocab: t5Vocab, byte_fallback: true },
    pieces: hardPieces,
  },
  {
    name: 'llama_like_byte_fallback', model: { type: 'Unigram', unk_id: 0, vocab: byteVocab(), byte_fallback: true },
    pieces: ['', '▁ab', 'ab', 'x', 'xyz', 'aü', 'ü€', '€', '😀', '▁😀▁', '日本語', 'a\u0000b',
             '<unk>', '<unk>x', 'x<unk>', 'é', '\u00a0', '🏳️‍🌈', 'zzzz'],
    tokens: ['<0x00>', '<0xFF>', '<0xff>', '€'],
    ids: [3, 258, 259, 264],
  },
  {
    name: 'partial_byte_fallback',
    model: { type: 'Unigram', unk_id: 0, vocab: partialByteVocab, byte_fallback: true },
    pieces: ['€', '😀', 'a€b', '€😀', 'ü', 'aüb', 'ü€', '€ü', 'é', 'x', 'ab'],
  },
  {
    name: 'byte_fallback_false',
    model: { type: 'Unigram', unk_id: 0, vocab: partialByteVocab, byte_fallback: false },
    pieces: ['€', 'a€b', '€😀'],
  },
  {
    // Scores above 20: two unk nodes (2 * (min - 10)) beat the piece "xx", and the fused "xx"
    // is then found in the vocabulary.
    name: 'fused_unk_found_in_vocab',
    model: { type: 'Unigram', unk_id: 2, vocab: [['a', 30.0], ['xx', 25.0], ['<unk>', 26.0]] },
    pieces: ['xx', 'axx', 'xxa', 'xxx', 'a'],
  },
  {
    // No unk_id: an unknown character fails only where its unk node would be on the best path.
    name: 'no_unk_id',
    model: { type: 'Unigram', unk_id: null, vocab: [['a', -1.0], ['ay', -1.0], ['b', -1.0]] },
    pieces: ['ab', 'ayb', 'y', 'ax', ''],
    tokens: ['ay'],
    ids: [0, 2, 3],
  },
  {
    name: 'no_unk_id_key', model: { type: 'Unigram', vocab: [['a', -1.0]] }, pieces: ['a', 'aa', 'b'],
  },
  {
    // Duplicate pieces: the id is the last one's, and so is the score.
    name: 'duplicate_pieces', duplicate_pieces: true,
    model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['a', -1], ['b', -1], ['ab', -1.5], ['ab', -3]] },
    pieces: ['ab', 'a', 'ba'],
    tokens: ['ab', 'a'],
    ids: [3, 4, 5],
  },
  // The unk score is min_score - 10 (kUnkPenalty): with min -6 (z), unk(x) + y = -16 + 10.5 =
  // -5.5 against "xy" at -5.49, -5.5 and -5.51 pins the constant and the tie rule (the first
  // proposal for a position is kept: "xy", from the earlier start).
  ...[-5.49, -5.5, -5.51].map((s) => ({
    name: `unk_penalty_xy_${s}`,
    model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0.0], ['y', 10.5], ['z', -6.0], ['xy', s]] },
    pieces: ['xy', 'xyxy', 'zxy', 'xxy'],
  })),
  {
    // Integer scores, unk_id other than 0.
    name: 'integer_scores',
    model: { type: 'Unigram', unk_id: 3, vocab: [['a', -1], ['b', -2], ['ab', -2], ['[UNK]', 0]] },
    pieces: ['ab', 'abab', 'ba', 'c', 'cc', 'acb'],
  },
];

const unigramMalformed = [
  ['missing_vocab', '{"type":"Unigram","unk_id":0}'],
  ['vocab_is_map', '{"type":"Unigram","unk_id":0,"vocab":{"a":1}}'],
  ['entry_short', '{"type":"Unigram","unk_id":0,"vocab":[["a"]]}'],
  ['entry_long', '{"type":"Unigram","unk_id":0,"vocab":[["a",1,2]]}'],
  ['score_string', '{"type":"Unigram","unk_id":0,"vocab":[["a","x"]]}'],
  ['score_null', '{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["a",null]]}'],
  ['piece_number', '{"type":"Unigram","unk_id":0,"vocab":[[1,2]]}'],
  ['entry_object', '{"type":"Unigram","unk_id":0,"vocab":[{"piece":"a","score":1}]}'],
  ['unk_id_out_of_range', '{"type":"Unigram","unk_id":2,"vocab":[["<unk>",0],["a",-1]]}'],
  ['unk_id_negative', '{"type":"Unigram","unk_id":-1,"vocab":[["<unk>",0]]}'],
  ['unk_id_string', '{"type":"Unigram","unk_id":"0","vocab":[["<unk>",0]]}'],
  ['unk_id_float', '{"type":"Unigram","unk_id":0.0,"vocab":[["<unk>",0]]}'],
  ['unk_id_with_empty_vocab', '{"type":"Unigram","unk_id":0,"vocab":[]}'],
  ['byte_fallback_string', '{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0]],"byte_fallback":"yes"}'],
  ['byte_fallback_null', '{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0]],"byte_fallback":null}'],
];

async function main() {
  const outDir = path.join(__dirname, 'tokenizer_expected');
  fs.mkdirSync(outDir, { recursive: true });
  const write = async (file, cases, bad) => {
    const result = { generated_by: 'tests/reference/models_reference.js', cases: [], malformed: malformed(bad) };
    for (const c of cases) result.cases.push(await runCase(c));
    fs.writeFileSync(path.join(outDir, file), JSON.stringify(result, null, 1) + '\n');
    console.log(`wrote ${file}: ${result.cases.length} models, ${result.malformed.length} malformed`);
  };
  await write('models_wordpiece.json', wordpieceCases, wordpieceMalformed);
  await write('models_unigram.json', unigramCases, unigramMalformed);
}

main().catch((e) => { console.error(e); process.exit(1); });
