// Plays an adaptive-bitrate HLS stream (a multivariant playlist) in headless
// Chromium with hls.js, first on an open network and then throttled, and
// reports which renditions played, as JSON on stdout:
//   node play_abr.mjs URL OPEN_SECONDS THROTTLED_SECONDS KBPS SHOT_PREFIX
// Screenshots SHOT_PREFIX-open.png and SHOT_PREFIX-throttled.png are kept.
// The caller decides what passes.
import { openPlayerPage } from './player_page.mjs';

const [url, open = '12', throttled = '25', kbps = '700', shot = 'abr'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node play_abr.mjs URL [OPEN_SECONDS] [THROTTLED_SECONDS] [KBPS] [SHOT_PREFIX]');
  process.exit(2);
}
const { browser, page, pageErrors } = await openPlayerPage('hls.js/dist/hls.min.js');
await page.evaluate((src) => {
  const v = document.getElementById('v');
  const s = document.getElementById('s');
  const r = (window.report = {
    levels: [], switches: [], fragments: [], errors: [], fatal: [], stalls: 0, playing: false,
    phase: 'open',
  });
  const hls = new Hls({ lowLatencyMode: true });
  window.hls = hls;
  hls.on(Hls.Events.MANIFEST_PARSED, (_e, d) => {
    r.levels = d.levels.map((l) => ({ height: l.height, bitrate: l.bitrate, codecs: l.codecs }));
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_e, d) => {
    r.switches.push({ phase: r.phase, level: d.level, height: hls.levels[d.level].height, t: v.currentTime });
  });
  hls.on(Hls.Events.FRAG_BUFFERED, (_e, d) => {
    if (d.frag.type === 'main') {
      r.fragments.push({ phase: r.phase, level: d.frag.level, height: hls.levels[d.frag.level].height });
    }
  });
  hls.on(Hls.Events.ERROR, (_e, d) => {
    (d.fatal ? r.fatal : r.errors).push(`${d.type}/${d.details}`);
  });
  v.addEventListener('playing', () => { r.playing = true; });
  v.addEventListener('waiting', () => { if (r.playing) r.stalls += 1; });
  hls.loadSource(src);
  hls.attachMedia(v);
  setInterval(() => {
    const l = hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : null;
    s.textContent = `${r.phase}: ${l ? l.height + 'p' : '-'} t=${v.currentTime.toFixed(1)}s`;
  }, 250);
}, url);
await page.waitForTimeout(Number(open) * 1000);
await page.screenshot({ path: `${shot}-open.png` });
// The network throttled as DevTools does (throughput in bytes per second).
const cdp = await page.context().newCDPSession(page);
await cdp.send('Network.enable');
await cdp.send('Network.emulateNetworkConditions', {
  offline: false,
  latency: 40,
  downloadThroughput: (Number(kbps) * 1000) / 8,
  uploadThroughput: (Number(kbps) * 1000) / 8,
});
await page.evaluate(() => { window.report.phase = 'throttled'; });
await page.waitForTimeout(Number(throttled) * 1000);
await page.screenshot({ path: `${shot}-throttled.png` });
const report = await page.evaluate(() => window.report);
report.pageErrors = pageErrors;
await browser.close();
console.log(JSON.stringify(report));
