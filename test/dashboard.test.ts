import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { type Gateway, startGateway } from '../src/start.js';
import { ROOT } from './helpers.js';

// The status page in a real headless Chromium (Debian's `chromium`, driven by playwright-core).
// CI installs it and sets INFERGATE_REQUIRE_BROWSER=1 so this cannot be skipped there.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.INFERGATE_REQUIRE_BROWSER) throw new Error(`${CHROMIUM} is required for the dashboard test`);

let gw: Gateway;
let browser: Browser;
let url: string;
beforeAll(async () => {
  if (!available) return;
  const config = await loadConfig(join(ROOT, 'examples/demo.yaml'), { PORT: '0' });
  config.server.host = '127.0.0.1';
  gw = await startGateway(config, { log: pino({ level: 'silent' }) });
  url = `http://127.0.0.1:${gw.port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});
afterAll(async () => {
  await browser?.close();
  await gw?.shutdown();
});

describe.skipIf(!available)('/dashboard in headless Chromium', () => {
  it('shows every demo model and its numbers change after traffic', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${url}/dashboard`);
    await page.waitForSelector('section[data-model="tiny-gpt"]');
    const models = await page.$$eval('section[data-model]', (cards) => cards.map((c) => c.getAttribute('data-model')));
    expect(models.sort()).toEqual([
      'identity',
      'mlp',
      'ocr',
      'ocr-det',
      'ocr-direction',
      'pipeline',
      'scorer',
      'tenants',
      'tiny-embed',
      'tiny-gpt',
      'tiny-rerank',
      'vad',
    ]);
    // The demo's ensemble: its steps where a model's replicas are.
    expect(await page.textContent('section[data-model="pipeline"] .replicas')).toBe('steps: identity → mlp');
    expect(await page.textContent('section[data-model="pipeline"] h2')).toMatch(/ensemble/);
    // A versioned model says which versions it serves.
    expect(await page.textContent('section[data-model="scorer"] [data-stat="versions"]')).toBe('versions 2, 3');
    // The demo's tiny-gpt takes LoRA adapters: it names them.
    expect(await page.textContent('section[data-model="tiny-gpt"] [data-stat="adapters"]')).toBe('LoRA sonnets, pirate');
    const total = () => page.textContent('section[data-model="identity"] [data-stat="total"]');
    expect(await total()).toBe('0 requests');
    expect(await page.textContent('section[data-model="identity"] .replicas')).toMatch(/identity-1 · ready/);
    expect(await page.textContent('#gateway')).toMatch(/^event loop busy \d+% ·$/);

    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    await Promise.all(Array.from({ length: 24 }, () => fetch(`${url}/v2/models/identity/infer`, { method: 'POST', body })));
    await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny-gpt', prompt: 'Hello', max_tokens: 12 }) });

    await page.waitForFunction(() => document.querySelector('section[data-model="identity"] [data-stat="total"]')?.textContent === '24 requests', null, {
      timeout: 10_000,
    });
    expect(Number(await page.textContent('section[data-model="identity"] [data-stat="throughput"]'))).toBeGreaterThan(0);
    expect(Number(await page.textContent('section[data-model="identity"] [data-stat="p99"]'))).toBeGreaterThan(0);
    expect(await page.$$('section[data-model="identity"] .bar')).not.toHaveLength(0); // batch-size bars
    await page.waitForFunction(() => /12 tokens/.test(document.querySelector('section[data-model="tiny-gpt"] [data-stat="total"]')?.textContent ?? ''));
    // Where the replica's step time went (no response format was asked: no grammar time).
    expect(await page.textContent('section[data-model="tiny-gpt"] [data-stat="steptime"]')).toMatch(
      /^prefill \d+% · decode \d+% · of which sampling \d+%, grammar 0%$/,
    );
    // What its replica's caches hold: the sequence has left (its KV rows with it); a 1-token prompt fills no prefix block.
    expect(await page.textContent('section[data-model="tiny-gpt"] [data-stat="cache"]')).toMatch(/^KV cache \d+\.\d MB · prefix cache 0\.0 MB$/);
    const shot = process.env.UPDATE_SCREENSHOTS ? join(ROOT, 'docs/dashboard.png') : join(tmpdir(), 'infergate-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
  });
});

describe.skipIf(!available)('/docs in headless Chromium', () => {
  it('renders Swagger UI with every operation while nothing but the gateway can be reached', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const outside: string[] = [];
    await page.route('**/*', (route) => {
      if (route.request().url().startsWith(url)) return route.continue();
      outside.push(route.request().url()); // a CDN, say: a firewalled user's browser cannot reach it
      return route.abort();
    });
    await page.goto(`${url}/docs`);
    await page.waitForSelector('.opblock', { timeout: 15_000 });
    const paths = await page.$$eval('.opblock .opblock-summary-path', (els) => els.map((e) => e.getAttribute('data-path')));
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, object> };
    expect(new Set(paths)).toEqual(new Set(Object.keys(doc.paths)));
    expect(outside).toEqual([]);
  });
});
