// llama.cpp (the prebuilt library inside node-llama-cpp) as the reference for tune's GGUF export:
// loads .gguf files and reports what llama.cpp does with them, as JSON on stdout. The caller
// (tests/e2e/gguf_e2e.py) compares the results with tune's own.
//
//   node gguf_reference.mjs JOB.json
//
// JOB: {"models": [{"path": "m.gguf", "vocab_only": false}], "threads": 1, "context": 256,
//       "generate": {"prompts": ["..."], "tokens": 40, "stop": [ids]},   greedy continuation,
//                                                        stopping only at a `stop` id (not kept)
//       "tokenize": {"texts": ["..."]},                     ids with and without BOS/EOS
//       "perplexity": {"texts": ["..."]},                   each text from position 0
//       "logits": {"text": "..."}}                          every logit after each token
// Output: {"results": [{"path", "add_bos", "add_eos", "bos", "eos", "chat_template",
//          "architecture", "generate": [{"ids", "text"}],
//          "tokenize": [{"special": [...], "plain": [...]}], "perplexity": {"ppl", "tokens"}}]}
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
// One thread: llama.cpp's worker threads spin while waiting, which on a busy 2-core machine costs
// ~30x the time of a single thread for these tiny models.
const threads = job.threads ?? 1;
const contextSize = job.context ?? 256;

function logSoftmaxAt(logits, token) {
  let max = -Infinity;
  for (const v of logits.values()) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits.values()) sum += Math.exp(v - max);
  return logits.get(token) - max - Math.log(sum);
}

async function generate(model, sequence, prompt, n, stop) {
  await sequence.clearHistory();
  const tokens = model.tokenize(prompt, true);
  if (model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
  const ids = [];
  // evaluate() samples greedily at temperature 0 and never stops on its own: end-of-generation
  // tokens are kept, as tune generate does when EOS is not its stop token.
  for await (const t of sequence.evaluate(tokens, {temperature: 0, yieldEogToken: true})) {
    if (stop.includes(t)) break;
    ids.push(t);
    if (ids.length >= n) break;
  }
  return {ids, text: model.detokenize(ids, false)};
}

async function perplexity(model, sequence, texts) {
  let nll = 0, count = 0;
  // Each text on its own, from position 0 (with BOS when the model adds one); special tokens
  // written in the text are parsed.
  for (const text of texts) {
    const window = model.tokenize(text, true).slice(0, contextSize - 1);
    const input = model.tokens.shouldPrependBosToken ? [model.tokens.bos, ...window] : window;
    const first = input.length - window.length;  // index of window[0] in input
    await sequence.clearHistory();
    const items = input.map((t, i) => (i >= first && i + 1 < input.length)
        ? [t, {generateNext: {logits: true}}] : t);
    const out = await sequence.controlledEvaluate(items);
    for (let i = first; i + 1 < input.length; ++i) {
      nll -= logSoftmaxAt(out[i].next.logits, input[i + 1]);
      ++count;
    }
  }
  return {ppl: Math.exp(nll / count), tokens: count};
}

// The full logit vectors after each token of one text (position 0 on), for comparing encodings.
async function logitsOf(model, sequence, text) {
  const tokens = model.tokenize(text, true);
  await sequence.clearHistory();
  const out = await sequence.controlledEvaluate(tokens.map((t) => [t, {generateNext: {logits: true}}]));
  return out.map((o) => {
    const row = [];
    for (const [token, value] of o.next.logits) row[token] = value;
    return row;
  });
}

const results = [];
for (const spec of job.models) {
  const model = await llama.loadModel({modelPath: spec.path, vocabOnly: !!spec.vocab_only});
  const r = {path: spec.path, add_bos: model.tokens.shouldPrependBosToken, add_eos: model.tokens.shouldAppendEosToken,
             bos: model.tokens.bos, eos: model.tokens.eos,
             chat_template: model.fileInfo.metadata?.tokenizer?.chat_template ?? null,
             architecture: model.fileInfo.metadata?.general?.architecture ?? null};
  if (job.tokenize) {
    r.tokenize = job.tokenize.texts.map((text) => {
      const plain = model.tokenize(text, true);
      const special = [...plain];
      if (model.tokens.shouldPrependBosToken) special.unshift(model.tokens.bos);
      if (model.tokens.shouldAppendEosToken) special.push(model.tokens.eos);
      return {plain, special};
    });
  }
  if (!spec.vocab_only && (job.generate || job.perplexity || job.logits)) {
    const context = await model.createContext({contextSize, threads, sequences: 1});
    const sequence = context.getSequence();
    if (job.generate) {
      r.generate = [];
      for (const p of job.generate.prompts) r.generate.push(await generate(model, sequence, p, job.generate.tokens, job.generate.stop ?? []));
    }
    if (job.logits) r.logits = await logitsOf(model, sequence, job.logits.text);
    if (job.perplexity) r.perplexity = await perplexity(model, sequence, job.perplexity.texts);
    await context.dispose();
  }
  await model.dispose();
  results.push(r);
}
process.stdout.write(JSON.stringify({results}) + "\n");
