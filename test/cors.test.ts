import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MODELS, startTestGateway } from './helpers.js';

// Browsers calling the gateway from pages of other origins (server.cors): preflights, the headers a page
// may read, and a real headless Chromium doing what a web app would (skipped only where it is missing; CI
// insists, as for the dashboard).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.INFERGATE_REQUIRE_BROWSER) throw new Error(`${CHROMIUM} is required for the CORS test`);

const SECRET = 'a-long-enough-shared-secret';
const KEY = { 'Infergate-Key': 'web', 'Infergate-Secret': SECRET };
const page = () => createServer((_req, res) => res.end('<!doctype html><title>app</title>'));
let allowedPage: Server;
let otherPage: Server;
let allowed: string; // the page origin the gateway lists
let other: string; // one it does not
let gw: Awaited<ReturnType<typeof startTestGateway>>;

const listen = async (server: Server) => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://localhost:${(server.address() as AddressInfo).port}`; // localhost: another origin than the gateway's 127.0.0.1
};

beforeAll(async () => {
  [allowedPage, otherPage] = [page(), page()];
  allowed = await listen(allowedPage);
  other = await listen(otherPage);
  gw = await startTestGateway({
    server: { cors: { origins: [allowed], max_age_s: 120 } },
    auth: { default: 'key', keys: [{ id: 'web', secret: SECRET }] },
    models: { mlp: { path: `${MODELS}mlp.onnx`, device: 'cpu', scaling: { min_containers: 1 } } },
  });
});
afterAll(async () => {
  await gw?.shutdown();
  allowedPage?.close();
  otherPage?.close();
});

const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });
const preflight = (origin: string) =>
  fetch(`${gw.url}/v2/models/mlp/infer`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,infergate-key,infergate-secret' },
  });

describe('cross-origin requests (server.cors)', () => {
  it('answers a listed origin’s preflight before auth (browsers send it without credentials)', async () => {
    const r = await preflight(allowed);
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(r.headers.get('access-control-allow-methods')).toContain('POST');
    expect(r.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('infergate-secret');
    expect(r.headers.get('access-control-max-age')).toBe('120');
  });

  it('lets a listed origin read answers and errors (with their request id and auth challenge), and no other origin', async () => {
    const ok = await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { origin: allowed, ...KEY } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(ok.headers.get('access-control-expose-headers')).toContain('x-request-id');
    const refused = await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { origin: allowed } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(allowed); // the page can show why
    expect(refused.headers.get('access-control-expose-headers')).toContain('www-authenticate');
    for (const r of [await preflight(other), await fetch(`${gw.url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { origin: other, ...KEY } })])
      expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('opens the WebSocket for a listed origin and for clients that send none, and refuses other origins with 403', async () => {
    const open = (origin?: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/ws`, { headers: KEY, ...(origin && { origin }) });
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      });
    expect(await open(allowed)).toBe(101);
    expect(await open()).toBe(101); // not a browser: no Origin, nothing to check
    expect(await open(other)).toBe(403);
  });

  it.runIf(available)('serves a web app on a listed origin in a real browser, and the browser keeps other origins out', async () => {
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const call = async (origin: string) => {
        const tab = await browser.newPage();
        await tab.goto(origin);
        // What a page's script does: a POST with custom auth headers (a preflight first), reading the answer.
        return tab.evaluate(
          async ({ url, body, key }) => {
            try {
              const r = await fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...key } });
              // A DELETE (preflighted like the POST): a call this caller does not have, so the page reads a 404.
              const gone = await fetch(`${url}/v2/calls/no-such-call`, { method: 'DELETE', headers: key });
              return { status: r.status, requestId: r.headers.get('x-request-id'), outputs: (await r.json()).outputs?.length, deleteStatus: gone.status };
            } catch (e) {
              return { error: String(e) };
            }
          },
          { url: gw.url, body, key: KEY },
        );
      };
      const fromApp = await call(allowed);
      expect(fromApp).toMatchObject({ status: 200, outputs: 1, deleteStatus: 404 });
      expect(fromApp.requestId).toBeTruthy();
      expect(await call(other)).toEqual({ error: expect.stringMatching(/Failed to fetch/) });
    } finally {
      await browser.close();
    }
  });
});
