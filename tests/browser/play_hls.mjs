// Plays an LL-HLS stream in headless Chromium with hls.js and reports what a
// viewer would have seen, as JSON on stdout:
//   node play_hls.mjs URL SECONDS SCREENSHOT.png
// Playback errors, stalls and hls.js's live latency are recorded; the caller
// decides what passes.
import { openPlayerPage } from './player_page.mjs';

const [url, seconds = '20', shot = 'hls-playing.png'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node play_hls.mjs URL [SECONDS] [SCREENSHOT]');
  process.exit(2);
}
const { browser, page, pageErrors: consoleErrors } = await openPlayerPage('hls.js/dist/hls.min.js');
await page.evaluate((src) => {
  const v = document.getElementById('v');
  const s = document.getElementById('s');
  const r = (window.report = { errors: [], fatal: [], stalls: 0, latency: [], times: [], playing: false });
  const hls = new Hls({ lowLatencyMode: true });
  window.hls = hls;
  hls.on(Hls.Events.ERROR, (_e, d) => {
    const what = `${d.type}/${d.details}`;
    (d.fatal ? r.fatal : r.errors).push(what);
  });
  v.addEventListener('playing', () => { r.playing = true; });
  v.addEventListener('waiting', () => { if (r.playing) r.stalls += 1; });
  hls.loadSource(src);
  hls.attachMedia(v);
  setInterval(() => {
    if (r.playing) {
      r.latency.push(hls.latency);
      r.times.push(v.currentTime);
    }
    s.textContent = `t=${v.currentTime.toFixed(2)}s latency=${(hls.latency || 0).toFixed(2)}s stalls=${r.stalls}`;
  }, 500);
}, url);
await page.waitForTimeout(Number(seconds) * 1000);
await page.screenshot({ path: shot });
const report = await page.evaluate(() => window.report);
report.pageErrors = consoleErrors;
await browser.close();
console.log(JSON.stringify(report));
