// Glass-to-glass latency through the gateway's pages in headless Chromium:
// the publish page sends the wall clock (?clock) over WHIP; the player page
// reads it back from each new picture (?latency), once over WebRTC (WHEP)
// and once over LL-HLS (hls.js brought into the page). Prints what each
// player page measured (window.report.latency) as JSON:
//   node latency.mjs BASE_URL SECONDS
// BASE_URL is http://HOST:PORT/APP/STREAM.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [base, seconds = '20'] = process.argv.slice(2);
if (!base) {
  console.error('usage: node latency.mjs BASE_URL [SECONDS]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ],
});
const page = async () => {
  const p = await browser.newPage({ viewport: { width: 640, height: 420 } });
  p.on('pageerror', (e) => console.error(p.url(), String(e)));
  return p;
};
const pub = await page();
await pub.goto(`${base}/publish?clock`);
for (let i = 0; i < 100; i++) {
  const r = await pub.evaluate(() => window.report);
  if (r && (r.state === 'publishing' || r.state === 'failed')) break;
  await pub.waitForTimeout(100);
}
// LL-HLS needs a few segments before a player can sit near the live edge.
await pub.waitForTimeout(6000);
const webrtc = await page();
await webrtc.goto(`${base}/?latency`);
const hls = await page();
await hls.addInitScript({ path: path.join(here, 'node_modules/hls.js/dist/hls.min.js') });
await hls.goto(`${base}/?latency&hls`);
await webrtc.waitForTimeout(Number(seconds) * 1000);
const out = {
  publisher: await pub.evaluate(() => window.report),
  webrtc: await webrtc.evaluate(() => window.report),
  hls: await hls.evaluate(() => window.report),
};
for (const [name, p] of [['webrtc', webrtc], ['hls', hls]]) {
  await p.screenshot({ path: path.join(here, `../../target/browser/latency-${name}.png`) });
}
await browser.close();
for (const k of ['webrtc', 'hls']) {
  if (out[k] && out[k].latency) out[k].latency.samples = out[k].latency.samples.slice(-20);
}
console.log(JSON.stringify(out));
