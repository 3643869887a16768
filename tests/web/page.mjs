// page.mjs - attnd's page in Debian's chromium (puppeteer-core): loads GET /
// from a running `attnd serve`, streams a completion, chats, opens the
// attention view and holds what the DOM shows to what the API answers (token
// count, grid size, heatmap weights under the mouse and the keyboard, a
// token's highlights), at 1280x800 and at phone width; screenshots go to OUT.
// usage: node page.mjs BASE_URL OUT_DIR   (run by tests/web/run.sh)
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";

const [base, out, keyed] = process.argv.slice(2); // KEYED: a server with --api-key k
const post = async (path, body) => {
  const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
};
let checks = 0;
const check = async (what, fn) => { await fn(); checks++; console.log(`ok - ${what}`); };

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(base + "/", { waitUntil: "networkidle0" });
  const prompt = "Echoes of the old", tokens = 8;

  await check("GET / is the page, and it names the model", async () => {
    assert.equal(await page.title(), "attnd");
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("aidreams"));
  });

  await check("a streamed completion shows the text /generate gives", async () => {
    await page.$eval("#prompt", (e, p) => { e.value = p; }, prompt);
    await page.$eval("#max-tokens", (e, n) => { e.value = n; }, String(tokens));
    await page.click("#generate");
    await page.waitForSelector('#output[data-done="true"]');
    const shown = await page.$eval("#output", (e) => e.textContent);
    const api = await post("/generate", { prompt, max_tokens: tokens, temperature: 0 });
    assert.equal(shown, api.text);
  });

  const api = await post("/v1/attention", { prompt, max_tokens: tokens, temperature: 0, format: "json" });
  const n = api.positions;
  await check("the attention view has one token per position and a layer x head grid", async () => {
    await page.click("#show-attention");
    await page.waitForSelector("#grid .thumb");
    assert.equal(await page.$$eval("#tokens .tok", (b) => b.length), n);
    assert.equal(await page.$$eval("#grid .thumb", (b) => b.length), api.layers.length * api.heads.length);
    const texts = await page.$$eval("#tokens .tok", (b) => b.map((x) => x.title));
    texts.forEach((t, k) => assert.ok(t.endsWith(`id ${api.tokens[k].id}`), t));
  });

  const near = (a, b) => Math.abs(a - b) <= 1e-3 * Math.max(b, 0.02); // f16 rows
  const probs = (layer, head) => api.attention.find((h) => h.layer === layer && h.head === head).probs;
  await check("the heatmap under the mouse shows the API's weights", async () => {
    await page.click('#grid .thumb[data-layer="1"][data-head="2"]');
    assert.equal(await page.$eval("#detail-title", (e) => e.textContent), "Layer 1, head 2");
    await page.$eval("#heatmap", (e) => e.scrollIntoView({ block: "center" }));
    const box = await (await page.$("#heatmap")).boundingBox();
    const g = await page.$eval("#heatmap", (e) => ({ w: e.width, cell: +e.dataset.cell, ml: +e.dataset.ml, mt: +e.dataset.mt }));
    const s = box.width / g.w; // CSS pixels per canvas pixel
    const p = probs(1, 2);
    for (const [i, j] of [[0, 0], [3, 1], [n - 1, 2], [n - 1, n - 1], [5, 5]]) {
      await page.mouse.move(box.x + (g.ml + (j + 0.5) * g.cell) * s, box.y + (g.mt + (i + 0.5) * g.cell) * s);
      const r = await page.$eval("#readout", (e) => ({ q: +e.dataset.q, k: +e.dataset.k, w: +e.dataset.weight }));
      assert.deepEqual([r.q, r.k], [i, j]);
      assert.ok(near(r.w, p[i][j]), `cell ${i},${j}: page ${r.w}, API ${p[i][j]}`);
    }
  });

  await check("a token click highlights what it attends to and what attends to it", async () => {
    const k = 3, p = probs(1, 2);
    await page.click(`#tokens .tok:nth-child(${k + 1})`);
    const got = await page.$$eval("#tokens .tok", (b) => b.map((x) => [+x.dataset.to, +x.dataset.from, x.getAttribute("aria-pressed")]));
    got.forEach(([to, from, pressed], j) => {
      assert.ok(near(to, j <= k ? p[k][j] : 0), `token ${j} attended by ${k}: ${to}`);
      assert.ok(near(from, j >= k ? p[j][k] : 0), `token ${j} attending to ${k}: ${from}`);
      assert.equal(pressed, String(j === k));
    });
  });

  await check("the keyboard moves over the heatmap and picks thumbnails", async () => {
    await page.focus("#heatmap");
    await page.mouse.move(0, 0);
    for (const key of ["ArrowDown", "ArrowDown", "ArrowRight"]) await page.keyboard.press(key);
    const r = await page.$eval("#readout", (e) => [+e.dataset.q, +e.dataset.k]);
    assert.equal(r[0] - r[1] >= 0, true);
    await page.focus('#grid .thumb[data-layer="0"][data-head="0"]');
    await page.keyboard.press("Enter");
    assert.equal(await page.$eval("#detail-title", (e) => e.textContent), "Layer 0, head 0");
    await page.screenshot({ path: `${out}/attention-1280x800.png`, fullPage: true });
  });

  await check("chat through /v1/chat/completions, streamed", async () => {
    await page.click("#tab-chat");
    await page.type("#chat-input", "Hello");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll("#messages li.assistant").length === 1 &&
      document.querySelector("#messages li.assistant").textContent.length > 0, { timeout: 10000 });
    assert.equal(await page.$eval("#chat-error", (e) => e.textContent), "");
  });

  await check("readable at phone width: nothing wider than the window", async () => {
    await page.setViewport({ width: 390, height: 844 });
    await page.click("#tab-complete");
    const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw <= w + 1, `page is ${sw} px wide in a ${w} px window`);
    await page.screenshot({ path: `${out}/attention-390.png`, fullPage: true });
  });
  if (keyed) {
    await check("behind an API key: the page asks for it, then works", async () => {
      const p2 = await browser.newPage();
      await p2.goto(keyed + "/", { waitUntil: "networkidle0" });
      await p2.waitForFunction(() => document.getElementById("model").textContent.includes("API key"));
      await p2.type("#api-key", "k");
      await p2.$eval("#api-key", (e) => e.dispatchEvent(new Event("change")));
      await p2.waitForFunction(() => document.getElementById("model").textContent.includes("aidreams"));
      await p2.$eval("#max-tokens", (e) => { e.value = "4"; });
      await p2.click("#generate");
      await p2.waitForSelector('#output[data-done="true"]');
      assert.ok((await p2.$eval("#output", (e) => e.textContent)).length > 0);
      await p2.close();
    });
  }
  assert.deepEqual(errors, [], "errors in the page");
  console.log(`web page: ${checks} checks passed`);
} finally {
  await browser.close();
}
