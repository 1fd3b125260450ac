// Client compatibility with the npm `openai` package against a running Hearth.
//
//   npm ci && HEARTH_URL=http://127.0.0.1:11435 node --test test.mjs
//
// HEARTH_URL is the server's base URL (no /v1); HEARTH_MODEL a chat model it serves;
// HEARTH_EMBED_MODEL an embedding model (default all-minilm:l6-v2). Without HEARTH_URL every
// test is skipped.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const URL = (process.env.HEARTH_URL ?? "").replace(/\/$/, "");
const MODEL = process.env.HEARTH_MODEL ?? "smollm2:135m";
const EMBED_MODEL = process.env.HEARTH_EMBED_MODEL ?? "all-minilm:l6-v2";
const skip = URL ? false : "HEARTH_URL is not set: no server to test";
const MESSAGES = [
  { role: "system", content: "You answer in one short sentence." },
  { role: "user", content: "Name a fruit that is yellow." },
];
const MAX = 20;

const client = () => new OpenAI({ baseURL: `${URL}/v1`, apiKey: "x", maxRetries: 0 });

test("chat", { skip }, async () => {
  const r = await client().chat.completions.create({
    model: MODEL,
    messages: MESSAGES,
    temperature: 0,
    max_tokens: MAX,
  });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const [c] = r.choices;
  assert.equal(c.index, 0);
  assert.equal(c.message.role, "assistant");
  assert.ok(c.message.content.trim().length > 0);
  assert.ok(["stop", "length"].includes(c.finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= MAX);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test("streaming chat concatenates to the greedy answer", { skip }, async () => {
  const oai = client();
  const whole = await oai.chat.completions.create({
    model: MODEL,
    messages: MESSAGES,
    temperature: 0,
    max_tokens: MAX,
  });
  const stream = await oai.chat.completions.create({
    model: MODEL,
    messages: MESSAGES,
    temperature: 0,
    max_tokens: MAX,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let deltas = 0;
  const finishes = [];
  let usage = null;
  const ids = new Set();
  for await (const chunk of stream) {
    ids.add(chunk.id);
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      assert.equal(c.index, 0);
      if (c.delta.content) {
        text += c.delta.content;
        deltas += 1;
      }
      if (c.finish_reason) finishes.push(c.finish_reason);
    }
  }
  assert.equal(ids.size, 1);
  assert.ok(deltas > 1);
  assert.equal(text, whole.choices[0].message.content);
  assert.deepEqual(finishes, [whole.choices[0].finish_reason]);
  assert.deepEqual(usage, whole.usage);
});

const TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "Ünïcödé 🎉"];

const cosine = (a, b) => {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
};

test("embeddings: the default base64 encoding equals float vectors", { skip }, async () => {
  const oai = client();
  // Without encoding_format the client asks for base64 and decodes it to numbers itself.
  const b64 = await oai.embeddings.create({ model: EMBED_MODEL, input: TEXTS });
  const floats = await oai.embeddings.create({
    model: EMBED_MODEL,
    input: TEXTS,
    encoding_format: "float",
  });
  for (const r of [b64, floats]) {
    assert.equal(r.object, "list");
    assert.equal(r.model, EMBED_MODEL);
    assert.deepEqual(
      r.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.ok(r.usage.prompt_tokens > TEXTS.length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
  }
  assert.deepEqual(b64.usage, floats.usage);
  for (let i = 0; i < TEXTS.length; i++) {
    const v = b64.data[i].embedding;
    const f = floats.data[i].embedding;
    assert.ok(Array.isArray(v));
    assert.equal(v.length, 384);
    assert.equal(f.length, 384);
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    assert.ok(cosine(v, f) >= 0.9999);
    // Bit for bit: base64 carries the float32 values the float form prints.
    assert.deepEqual(v, f.map((x) => Math.fround(x)));
  }
  // The two sentences about eating are closer than either is to the emoji line.
  const [a, b, c] = b64.data.map((d) => d.embedding);
  assert.ok(cosine(a, b) > cosine(a, c));
  const short = await oai.embeddings.create({ model: EMBED_MODEL, input: TEXTS[0], dimensions: 32 });
  assert.equal(short.data.length, 1);
  assert.equal(short.data[0].embedding.length, 32);
});
