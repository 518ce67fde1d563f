// `tune serve` against the stock OpenAI client (npm `openai`), end to end:
//   node server_openai.mjs --tune PATH/TO/tune --model MODEL_DIR
// MODEL_DIR is a model with a tokenizer and a PEFT adapter in MODEL_DIR/adapter
// (tests/reference/make_byte_tokenizer_model.py makes one from a golden case). The server is
// started on a free port with the adapter served as "ad"; the checks: models, chat and
// completions streamed and whole (equal to `tune generate` greedy), adapter selection, n > 1,
// seeds, logprobs, usage, stop, every error path, 64 concurrent streaming clients whose answers
// equal the same requests served alone, malformed requests and abrupt disconnects on raw sockets,
// and SIGTERM finishing the requests in flight. Prints PASS or FAIL lines; exits 1 on a failure.
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";
import path from "node:path";
import OpenAI from "openai";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const TUNE = args.tune;
const MODEL = args.model;
const BASE = path.basename(MODEL);
let failures = 0;
const t0 = Date.now();

function check(cond, what) {
  if (cond) {
    console.log(`ok   ${what}`);
  } else {
    console.log(`FAIL ${what}`);
    failures++;
  }
}
function equal(a, b, what) {
  const ok = JSON.stringify(a) === JSON.stringify(b);
  check(ok, ok ? what : `${what}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
}

// ---- the server ----
function startServer(extra = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(TUNE, ["serve", "--model", MODEL, "--adapter", `ad=${MODEL}/adapter`, "--adapter", `ad2=${MODEL}/adapter`, "--port", "0", "--max-n", "64", ...extra], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    process.on("exit", () => proc.kill("SIGKILL"));
    let log = "";
    proc.stderr.on("data", (d) => {
      log += d.toString();
      const m = log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !proc.port) {
        proc.port = Number(m[1]);
        resolve(proc);
      }
    });
    proc.log = () => log;
    proc.on("exit", (code, signal) => {
      proc.exitCode_ = code;
      proc.exitSignal_ = signal;
      if (!proc.port) reject(new Error(`tune serve exited (${code}) before listening:\n${log}`));
    });
  });
}
const exited = (proc) =>
  new Promise((resolve) => (proc.exitCode_ !== undefined ? resolve(proc.exitCode_) : proc.on("exit", (c) => resolve(c))));

process.on("uncaughtException", (e) => {
  console.log(`FAIL uncaught: ${e.stack ?? e}`);
  console.log("FAIL: server_openai");
  process.exit(1);
});
process.on("unhandledRejection", (e) => {
  console.log(`FAIL unhandled: ${e?.stack ?? e}`);
  console.log("FAIL: server_openai");
  process.exit(1);
});
const server = await startServer();
const url = `http://127.0.0.1:${server.port}`;
const client = new OpenAI({ apiKey: "none", baseURL: `${url}/v1`, maxRetries: 0, timeout: 60000 });

function generate(extra) {
  const out = execFileSync(TUNE, ["generate", "--model", MODEL, "--json", ...extra], { encoding: "utf8" });
  return JSON.parse(out);
}

async function streamChat(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const texts = {};
  const finish = {};
  let usage = null;
  let chunks = 0;
  let wellFormed = true;
  for await (const c of stream) {
    chunks++;
    if (c.object !== "chat.completion.chunk" || typeof c.id !== "string") wellFormed = false;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      texts[ch.index] = (texts[ch.index] ?? "") + (ch.delta?.content ?? "");
      if (ch.finish_reason) {
        if (finish[ch.index]) wellFormed = false;  // one closing chunk per choice
        finish[ch.index] = ch.finish_reason;
      }
    }
  }
  return { texts, finish, usage, chunks, wellFormed };
}

const hi = [{ role: "user", content: "Hi" }];

// ---- models ----
const models = await client.models.list();
equal(models.data.map((m) => m.id), [BASE, "ad", "ad2"], "GET /v1/models lists the base model and the adapters");

// ---- chat, whole and streamed ----
const chat = await client.chat.completions.create({ model: BASE, messages: hi, max_tokens: 8, temperature: 0 });
const genChat = generate(["--chat", "--prompt", "Hi", "--max-new-tokens", "8"]);
equal(chat.choices[0].message.content, genChat.completion, "chat greedy equals tune generate --chat");
equal(chat.object, "chat.completion", "chat object");
equal(chat.choices[0].message.role, "assistant", "chat message role");
equal(chat.choices[0].finish_reason, genChat.finish_reason, "chat finish_reason");
equal(chat.usage, { completion_tokens: genChat.tokens, prompt_tokens: genChat.prompt_tokens, total_tokens: genChat.tokens + genChat.prompt_tokens }, "chat usage");

const streamed = await streamChat({ model: BASE, messages: hi, max_tokens: 8, temperature: 0, stream_options: { include_usage: true } });
equal(streamed.texts[0], chat.choices[0].message.content, "streamed chat equals the whole answer");
equal(streamed.finish[0], chat.choices[0].finish_reason, "streamed chat finish_reason");
equal(streamed.usage, chat.usage, "stream_options.include_usage: the usage chunk");
check(streamed.wellFormed && streamed.chunks >= 3, `streamed chat is well-formed (${streamed.chunks} chunks)`);

const mct = await client.chat.completions.create({ model: BASE, messages: hi, max_completion_tokens: 3, temperature: 0 });
equal([mct.usage.completion_tokens, mct.choices[0].finish_reason], [3, "length"], "max_completion_tokens limits the answer");

// ---- completions ----
const comp = await client.completions.create({ model: BASE, prompt: "Hello", max_tokens: 6, temperature: 0 });
const genComp = generate(["--prompt", "Hello", "--max-new-tokens", "6"]);
equal(comp.choices[0].text, genComp.completion, "completion greedy equals tune generate");
equal(comp.object, "text_completion", "completion object");
equal(comp.usage.prompt_tokens, genComp.prompt_tokens, "completion usage.prompt_tokens");
let compText = "";
let compFinish = null;
for await (const c of await client.completions.create({ model: BASE, prompt: "Hello", max_tokens: 6, temperature: 0, stream: true })) {
  for (const ch of c.choices) {
    compText += ch.text;
    compFinish = ch.finish_reason ?? compFinish;
  }
}
equal([compText, compFinish], [comp.choices[0].text, comp.choices[0].finish_reason], "streamed completion equals the whole answer");

// ---- adapter selection ----
const adChat = await client.chat.completions.create({ model: "ad", messages: hi, max_tokens: 8, temperature: 0 });
const genAd = generate(["--adapter", `${MODEL}/adapter`, "--chat", "--prompt", "Hi", "--max-new-tokens", "8"]);
equal(adChat.choices[0].message.content, genAd.completion, "model \"ad\" equals tune generate --adapter");
check(adChat.choices[0].message.content !== chat.choices[0].message.content, "the adapter's answer differs from the base model's");
equal(adChat.model, "ad", "the response names the adapter");

// ---- n, seed ----
const sampled = { model: BASE, messages: hi, max_tokens: 12, temperature: 1.0, n: 3, seed: 1234 };
const s1 = await client.chat.completions.create(sampled);
const s2 = await client.chat.completions.create(sampled);
const s3 = await client.chat.completions.create({ ...sampled, seed: 99 });
equal(s1.choices.map((c) => c.index), [0, 1, 2], "n = 3 gives choices 0, 1, 2");
equal(s1.choices.map((c) => c.message.content), s2.choices.map((c) => c.message.content), "the same seed gives the same choices");
check(new Set(s1.choices.map((c) => c.message.content)).size > 1, "the n choices are different samples");
check(JSON.stringify(s1.choices.map((c) => c.message.content)) !== JSON.stringify(s3.choices.map((c) => c.message.content)), "another seed gives other samples");
equal(s1.usage.completion_tokens, 36, "usage counts the tokens of all choices");
const sStream = await streamChat(sampled);
equal([0, 1, 2].map((i) => sStream.texts[i]), s1.choices.map((c) => c.message.content), "streamed n = 3 with a seed equals the whole answer");

// A whole answer that takes a while arrives after keep-alive spaces, which JSON parsing skips.
const slow = await client.completions.create({ model: BASE, prompt: "Hello", max_tokens: 200, temperature: 1.0, n: 16, seed: 5 });
check(slow.choices.length === 16 && slow.usage.completion_tokens > 16 * 100, `a long whole answer parses (${slow.usage.completion_tokens} tokens)`);
const slowRaw = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: BASE, prompt: "Hello", max_tokens: 200, temperature: 1.0, n: 16, seed: 5 }) });
const slowText = await slowRaw.text();
equal(JSON.parse(slowText).choices.map((c) => c.text), slow.choices.map((c) => c.text), "the same seed gives the same long answer");
console.log(`  (the long whole answer began with ${slowText.length - slowText.trimStart().length} keep-alive spaces)`);

// ---- logprobs ----
const lp = await client.chat.completions.create({ model: BASE, messages: hi, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
const content = lp.choices[0].logprobs?.content ?? [];
equal(content.length, lp.usage.completion_tokens, "chat logprobs: one entry per token");
check(content.every((t) => t.logprob <= 0 && t.top_logprobs.length === 3 && Array.isArray(t.bytes)), "chat logprobs: logprob <= 0, 3 top_logprobs, bytes");
check(content.every((t) => t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob), "chat top_logprobs are sorted");
check(content.every((t) => Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-9), "greedy: the chosen token is the most likely");
equal(content.map((t) => t.token).join(""), lp.choices[0].message.content, "chat logprobs tokens spell the answer");
const clp = await client.completions.create({ model: BASE, prompt: "Hello", max_tokens: 4, temperature: 0, logprobs: 2 });
const L = clp.choices[0].logprobs;
check(L && L.tokens.length === 4 && L.token_logprobs.length === 4 && L.top_logprobs.every((d) => Object.keys(d).length <= 2 && Object.keys(d).length >= 1), "completion logprobs: tokens, token_logprobs, top_logprobs (2)");
equal(L.text_offset, [0, 1, 2, 3], "completion logprobs text_offset");

// ---- stop ----
// Greedy from "Hello" is "oooooo" on this model: stop "oo" ends at once.
const stopped = await client.completions.create({ model: BASE, prompt: "Hello", max_tokens: 6, temperature: 0, stop: ["xyz", "oo"] });
equal([stopped.choices[0].text, stopped.choices[0].finish_reason, stopped.usage.completion_tokens], ["", "stop", 2], "stop strings (a list)");
// A sampled answer has varied text: a stop string from its middle cuts it at its first occurrence.
const longest = s1.choices.reduce((a, c) => (c.message.content.length > a.message.content.length ? c : a));
const sampledText = longest.message.content;
const stopAt = sampledText.slice(Math.floor(sampledText.length / 2), Math.floor(sampledText.length / 2) + 2);
check(stopAt.length === 2, `a sampled answer long enough for a stop string (${JSON.stringify(sampledText)})`);
const stoppedChat = await client.chat.completions.create({ ...sampled, n: 1, seed: sampled.seed + longest.index, stop: stopAt });
equal([stoppedChat.choices[0].message.content, stoppedChat.choices[0].finish_reason], [sampledText.slice(0, sampledText.indexOf(stopAt)), "stop"], `stop string ${JSON.stringify(stopAt)} cuts the answer before it`);

// ---- errors ----
async function apiError(params, endpoint = "chat") {
  try {
    if (endpoint === "chat") await client.chat.completions.create(params);
    else await client.completions.create(params);
    return null;
  } catch (e) {
    return e;
  }
}
async function raw(method, route, body, headers = {}) {
  const r = await fetch(`${url}${route}`, { method, body, headers: { "content-type": "application/json", ...headers } });
  let json = null;
  try {
    json = await r.json();
  } catch {}
  return { status: r.status, json };
}
const isError = (j) => j && j.error && typeof j.error.message === "string" && typeof j.error.type === "string" && "param" in j.error && "code" in j.error;

const badJson = await raw("POST", "/v1/chat/completions", '{"model": "x", "messages": [');
check(badJson.status === 400 && isError(badJson.json) && badJson.json.error.type === "invalid_request_error", "bad JSON: 400 invalid_request_error");
const unknown = await apiError({ model: "nope", messages: hi, max_tokens: 2 });
check(unknown instanceof OpenAI.NotFoundError && unknown.code === "model_not_found" && unknown.param === "model", "unknown model: 404 model_not_found");
const tooLong = await apiError({ model: BASE, messages: hi, max_tokens: 300 });
check(tooLong instanceof OpenAI.BadRequestError && tooLong.code === "context_length_exceeded", "prompt + max_tokens past the context: 400 context_length_exceeded");
const longPrompt = await apiError({ model: BASE, prompt: "x".repeat(400) }, "completion");
check(longPrompt instanceof OpenAI.BadRequestError && longPrompt.code === "context_length_exceeded" && longPrompt.param === "prompt", "a prompt past the context: 400 context_length_exceeded");
for (const [param, value] of [["temperature", 5], ["top_p", 1.5], ["n", 0], ["max_tokens", 0], ["max_tokens", 100000], ["stop", 7], ["seed", "x"], ["logprobs", "yes"], ["top_logprobs", 3], ["messages", []]]) {
  const e = await apiError({ model: BASE, messages: hi, max_tokens: 2, [param]: value });
  check(e instanceof OpenAI.BadRequestError && e.param === param && e.type === "invalid_request_error", `invalid ${param} = ${JSON.stringify(value)}: 400 naming the param`);
}
const noMessages = await raw("POST", "/v1/chat/completions", JSON.stringify({ model: BASE }));
check(noMessages.status === 400 && noMessages.json?.error?.param === "messages", "missing messages: 400");
const big = await raw("POST", "/v1/chat/completions", JSON.stringify({ model: BASE, messages: [{ role: "user", content: "a".repeat(2 << 20) }] }));
check(big.status === 413 && isError(big.json), "a body over --max-body: 413");
const wrongMethod = await raw("GET", "/v1/chat/completions");
check(wrongMethod.status === 405 && isError(wrongMethod.json), "GET on a POST route: 405");
const wrongRoute = await raw("POST", "/v1/nothing", "{}");
check(wrongRoute.status === 404 && isError(wrongRoute.json), "unknown route: 404");
const health = await raw("GET", "/health");
check(health.status === 200 && health.json.status === "ok", "GET /health");

// ---- load: 64 concurrent streaming clients, each equal to the same request served alone ----
const loadRequests = Array.from({ length: 64 }, (_, i) => ({
  model: [BASE, "ad", "ad2"][i % 3],
  messages: [{ role: "user", content: `Question ${i}: ${"abcdefgh".slice(0, 1 + (i % 8))}?` }],
  max_tokens: 16 + (i % 5) * 4,
  temperature: 0,
}));
const before = (await raw("GET", "/health")).json;
const tLoad = Date.now();
const results = await Promise.all(loadRequests.map((r) => streamChat(r)));
const loadSeconds = (Date.now() - tLoad) / 1000;
const after = (await raw("GET", "/health")).json;
const alone = [];
for (const r of loadRequests) alone.push(await client.chat.completions.create(r));
let same = 0;
let formed = 0;
for (let i = 0; i < 64; i++) {
  if (results[i].wellFormed && results[i].finish[0]) formed++;
  if (results[i].texts[0] === alone[i].choices[0].message.content && results[i].finish[0] === alone[i].choices[0].finish_reason) same++;
  else console.log(`  request ${i}: under load ${JSON.stringify(results[i].texts[0])}, alone ${JSON.stringify(alone[i].choices[0].message.content)}`);
}
const loadTokens = after.generated_tokens - before.generated_tokens;
equal(formed, 64, "64 concurrent streams are all well-formed");
equal(same, 64, "each of the 64 answers equals the same request served alone (greedy)");
check(after.largest_batch >= 16, `requests shared decode steps (largest batch ${after.largest_batch})`);
console.log(`load: 64 clients, ${loadTokens} tokens in ${loadSeconds.toFixed(2)} s = ${(loadTokens / loadSeconds).toFixed(0)} tokens/s, largest batch ${after.largest_batch}`);

// ---- malformed requests and abrupt disconnects on raw sockets ----
function rawSocket(payload, { closeAfterData = false, wait = 2000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(server.port, "127.0.0.1");
    let got = "";
    const done = () => {
      s.destroy();
      resolve(got);
    };
    s.on("connect", () => s.write(payload));
    s.on("data", (d) => {
      got += d.toString();
      if (closeAfterData && got.includes("data: ")) done();
    });
    s.on("error", done);
    s.on("close", done);
    setTimeout(done, wait);
  });
}
const garbage = await rawSocket("THIS IS NOT HTTP\r\n\r\n");
check(/^HTTP\/1\.1 4\d\d/.test(garbage) || garbage === "", "garbage request line: a 4xx or a closed connection");
await rawSocket("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"model\":", { wait: 300 });
await rawSocket("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{{{{{");
const longRequest = JSON.stringify({ model: BASE, prompt: "Hello", max_tokens: 220, temperature: 0, stream: true });
const cancelledBefore = (await raw("GET", "/health")).json.cancelled;
await Promise.all(
  Array.from({ length: 8 }, () =>
    rawSocket(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${longRequest.length}\r\n\r\n${longRequest}`, { closeAfterData: true }),
  ),
);
async function idleHealth() {
  let health = (await raw("GET", "/health")).json;
  for (let i = 0; i < 50 && health.active + health.waiting > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    health = (await raw("GET", "/health")).json;
  }
  return health;
}
const cancelledStreams = (await idleHealth()).cancelled;
// A whole (non-streamed) answer whose client hangs up: 64 choices of 220 tokens, closed after 150 ms.
const wholeRequest = JSON.stringify({ model: BASE, prompt: "Hello", max_tokens: 220, temperature: 1.0, n: 64 });
await rawSocket(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${wholeRequest.length}\r\n\r\n${wholeRequest}`, { wait: 150 });
const h = await idleHealth();
check(h.status === "ok" && h.active === 0, "the server is up and idle after malformed requests and disconnects");
check(cancelledStreams - cancelledBefore >= 4, `clients that hung up mid-stream freed their slots (${cancelledStreams - cancelledBefore} of 8 cancelled)`);
check(h.cancelled - cancelledStreams >= 32, `a client that hung up on a whole answer freed its slots (${h.cancelled - cancelledStreams} of 64 choices cancelled)`);
const afterAbuse = await client.chat.completions.create({ model: BASE, messages: hi, max_tokens: 8, temperature: 0 });
equal(afterAbuse.choices[0].message.content, chat.choices[0].message.content, "answers are unchanged after the abuse");

// ---- graceful SIGTERM: in-flight requests finish, new connections are refused, exit 0 ----
const inflight = Array.from({ length: 4 }, (_, i) => streamChat({ model: BASE, messages: [{ role: "user", content: `long ${i}` }], max_tokens: 200, temperature: 1.0, seed: i, n: 16 }));
await new Promise((r) => setTimeout(r, 300));
const atSigterm = (await raw("GET", "/health")).json;
server.kill("SIGTERM");
check(atSigterm.active + atSigterm.waiting > 0, `requests were in flight at SIGTERM (${atSigterm.active} sequences)`);
await new Promise((r) => setTimeout(r, 300));
let refused = false;
try {
  await fetch(`${url}/health`);
} catch {
  refused = true;
}
const finished = await Promise.allSettled(inflight);
check(refused, "after SIGTERM new connections are refused");
check(
  finished.every((f) => f.status === "fulfilled" && Object.keys(f.value.finish).length === 16 && Object.values(f.value.finish).every((x) => x === "length" || x === "stop")),
  "after SIGTERM the requests in flight finish",
);
equal(await exited(server), 0, "tune serve exits 0 after SIGTERM");
check(/SIGTERM/.test(server.log()), "the server says it stops on SIGTERM");

check(/ POST \/v1\/chat\/completions 200 model=\S+ n=1 stream prompt_tokens=\d+ completion_tokens=\d+ finish=\w+/.test(server.log()), "a log line per request, with model and token counts");

// ---- --log-json and SIGINT ----
const server2 = await startServer(["--log-json"]);
const client2 = new OpenAI({ apiKey: "none", baseURL: `http://127.0.0.1:${server2.port}/v1`, maxRetries: 0 });
await client2.completions.create({ model: BASE, prompt: "Hello", max_tokens: 2, temperature: 0 });
await fetch(`http://127.0.0.1:${server2.port}/v1/nothing`);
server2.kill("SIGINT");
equal(await exited(server2), 0, "tune serve exits 0 after SIGINT");
const jsonLines = server2.log().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
check(jsonLines.some((j) => j.path === "/v1/completions" && j.status === 200 && j.model === BASE && j.completion_tokens === 2) && jsonLines.some((j) => j.path === "/v1/nothing" && j.status === 404), "--log-json: one JSON object per request");

console.log(`${failures === 0 ? "PASS" : "FAIL"}: server_openai (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failures === 0 ? 0 : 1);
