// Headless-Chromium driver for LoopNeRF's browser tests (Debian's chromium via
// playwright-core; no browser download). Loads a page served on 127.0.0.1 and blocks
// every request to any other host.
//
//   node driver.cjs render URL views.json out.json   # window.loopnerf.render(view) per view
//   node driver.cjs play   URL plan.json  out.json   # the page as a person sees it, sampled over time
//   node driver.cjs validate FILE.glb - out.json     # the Khronos glTF validator's report
//
// views.json: {"views": [{matrix[16], fx, fy, cx, cy, width, height, time}, ...]}
// plan.json:  {"width", "height", "samples", "interval_ms"}
// out.json:   {"results" | "samples", "errors": [...], "blocked": [...], "gl_renderer"}
// Environment: LOOPNERF_CHROMIUM (default /usr/bin/chromium).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
];
const LOCAL = new Set(['127.0.0.1', 'localhost', '[::1]']);

async function main() {
  const [mode, url, inFile, outFile] = process.argv.slice(2);
  if (!['render', 'play', 'validate'].includes(mode) || !url || !inFile || !outFile) {
    throw new Error('usage: node driver.cjs render|play URL in.json out.json | validate FILE.glb - out.json');
  }
  if (mode === 'validate') {
    const validator = require('gltf-validator');
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(url)), { maxIssues: 100 });
    fs.writeFileSync(outFile, JSON.stringify(report));
    return;
  }
  const input = JSON.parse(fs.readFileSync(inFile, 'utf8'));
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loopnerf-chromium-'));
  const errors = [];
  const blocked = [];
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.LOOPNERF_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: input.width || 320, height: input.height || 240 },
    timeout: 60000,
  });
  const out = { errors, blocked };
  try {
    await context.route('**/*', (route) => {
      const u = new URL(route.request().url());
      if (u.protocol === 'data:' || u.protocol === 'blob:' || LOCAL.has(u.hostname)) return route.continue();
      blocked.push(route.request().url());
      return route.abort();
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(60000);
    page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
    page.on('pageerror', (e) => errors.push('page: ' + String(e)));
    page.on('requestfailed', (r) => errors.push('request failed: ' + r.url()));
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
    const target = mode === 'render' ? url + (url.includes('?') ? '&' : '?') + 'measure' : url;
    await page.goto(target, { waitUntil: 'load', timeout: 60000 });
    await page.waitForFunction(() => window.loopnerf && (window.loopnerf.ready || window.loopnerf.error), null, { timeout: 60000 });
    const err = await page.evaluate(() => window.loopnerf.error);
    if (err) errors.push('player: ' + err);
    if (mode === 'render' && !err) {
      out.gl_renderer = await page.evaluate(() => window.loopnerf.glRenderer);
      out.results = [];
      for (const view of input.views) out.results.push(await page.evaluate((v) => window.loopnerf.render(v), view));
    } else if (mode === 'play' && !err) {
      out.samples = [];
      const t0 = Date.now();
      for (let i = 0; i < (input.samples || 8); i++) {
        if (i) await page.waitForTimeout(input.interval_ms || 250);
        const state = await page.evaluate(() => ({ frame: window.loopnerf.visibleFrame(), drawn: window.loopnerf.drawn(), time: window.loopnerf.time() }));
        const png = await page.screenshot({ type: 'png' });
        out.samples.push({ ms: Date.now() - t0, ...state, png: png.toString('base64') });
      }
    }
  } finally {
    await context.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
  fs.writeFileSync(outFile, JSON.stringify(out));
}

main().catch((e) => {
  console.error(String((e && e.stack) || e));
  process.exit(1);
});
