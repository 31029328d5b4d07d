// The gateway's own pages in headless Chromium: optionally the publish page
// sending Chromium's fake camera and microphone over WHIP, then the player
// page playing over WHEP for SECONDS. Prints what each page reported
// (window.report: state, errors, getStats figures) as JSON, sampled each
// second for the player, and keeps screenshots:
//   node webrtc_pages.mjs BASE_URL SECONDS SHOT_PREFIX [publish]
// BASE_URL is http://HOST:PORT/APP/STREAM.
import { chromium } from 'playwright-core';

const [base, seconds = '20', shot = 'webrtc', publish] = process.argv.slice(2);
if (!base) {
  console.error('usage: node webrtc_pages.mjs BASE_URL [SECONDS] [SHOT_PREFIX] [publish]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  ],
});
const out = { publisher: null, player: null, samples: [] };
let pub = null;
if (publish) {
  pub = await browser.newPage({ viewport: { width: 640, height: 400 } });
  pub.on('pageerror', (e) => console.error('publish page:', String(e)));
  await pub.goto(`${base}/publish`);
  for (let i = 0; i < 100; i++) {
    const r = await pub.evaluate(() => window.report);
    if (r && (r.state === 'publishing' || r.state === 'failed')) break;
    await pub.waitForTimeout(100);
  }
  // Let a key frame or two reach the GOP cache.
  await pub.waitForTimeout(1500);
}
const play = await browser.newPage({ viewport: { width: 640, height: 400 } });
play.on('pageerror', (e) => console.error('player page:', String(e)));
await play.goto(`${base}/`);
for (let i = 0; i < Number(seconds); i++) {
  await play.waitForTimeout(1000);
  out.samples.push(await play.evaluate(() => window.report && window.report.stats));
}
await play.screenshot({ path: `${shot}-player.png` });
out.player = await play.evaluate(() => window.report);
if (pub) {
  await pub.screenshot({ path: `${shot}-publisher.png` });
  out.publisher = await pub.evaluate(() => window.report);
}
await browser.close();
console.log(JSON.stringify(out));
