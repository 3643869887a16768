// client.mjs - the official `openai` package, unmodified, against a running attnd:
// chat (plain and streamed with usage), completions (plain, streamed, echo),
// the model list, n = 2 choices, and errors surfacing as the client's APIError with status and
// message. usage: node client.mjs BASE_URL   (run by tests/openai/run.sh)
import assert from "node:assert/strict";
import OpenAI from "openai";

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name three colours." },
];
let checks = 0;
const check = (what, fn) => fn().then(() => { checks++; console.log(`ok - ${what}`); });

await check("models.list names the model", async () => {
  const models = await client.models.list();
  assert.ok(models.data.length === 1 && models.data[0].id.endsWith(".gguf"), JSON.stringify(models.data));
});

let chatText;
await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({ model: "x", messages, max_tokens: 16, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.prompt_tokens > 10, "the chat template laid out the prompt");
  chatText = r.choices[0].message.content;
});

await check("chat stream with include_usage adds up to the same text", async () => {
  const stream = await client.chat.completions.create({
    model: "x", messages, max_tokens: 16, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, chatText);
  assert.ok(finish && usage && usage.completion_tokens > 0, JSON.stringify({ finish, usage }));
});

await check("chat logprobs with top_logprobs", async () => {
  const r = await client.chat.completions.create({
    model: "x", messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  for (const t of content) {
    assert.ok(t.logprob <= 0 && t.top_logprobs.length === 3 && Array.isArray(t.bytes));
    assert.equal(t.top_logprobs[0].logprob, t.logprob, "greedy picks the most likely");
  }
});

await check("completions.create, streamed and with echo", async () => {
  const r = await client.completions.create({ model: "x", prompt: "Once upon", max_tokens: 8, temperature: 0 });
  assert.equal(r.object, "text_completion");
  const text = r.choices[0].text;
  const stream = await client.completions.create({
    model: "x", prompt: "Once upon", max_tokens: 8, temperature: 0, stream: true, echo: true,
  });
  let streamed = "";
  for await (const chunk of stream) for (const c of chunk.choices) streamed += c.text;
  assert.equal(streamed, "Once upon" + text);
});

await check("a bad request is an APIError with status 400 and the message", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "x", messages: [{ role: "wizard", content: "hi" }] }),
    (e) => e instanceof OpenAI.APIError && e.status === 400 && /messages\[0\]\.role/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: "x", messages, n: 9 }),
    (e) => e.status === 400 && /n must be an integer from 1 to 8/.test(e.message),
  );
});

await check("n = 2 choices, plain and streamed", async () => {
  const ask = { model: "x", messages, max_tokens: 6, temperature: 1, seed: 3, n: 2, ignore_eos: true };
  const r = await client.chat.completions.create(ask);
  assert.equal(r.choices.length, 2);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  assert.equal(r.usage.completion_tokens, 12, "two choices of 6 tokens");
  const stream = await client.chat.completions.create({ ...ask, stream: true });
  const text = ["", ""];
  for await (const chunk of stream) for (const c of chunk.choices) text[c.index] += c.delta?.content ?? "";
  assert.deepEqual(text, r.choices.map((c) => c.message.content));
});

console.log(`openai client: ${checks} checks passed`);
