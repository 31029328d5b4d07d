// Plays an HTTP-FLV stream in headless Chromium with flv.js and reports what
// a viewer would have seen, as JSON on stdout:
//   node play_flv.mjs URL SECONDS SCREENSHOT.png
// The video's size, the frames Chromium decoded and dropped, how far
// playback went, stalls and flv.js's errors are recorded; the caller decides
// what passes.
import { openPlayerPage } from './player_page.mjs';

const [url, seconds = '15', shot = 'flv-playing.png'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node play_flv.mjs URL [SECONDS] [SCREENSHOT]');
  process.exit(2);
}
const { browser, page, pageErrors } = await openPlayerPage('flv.js/dist/flv.min.js');
await page.evaluate((src) => {
  const v = document.getElementById('v');
  const s = document.getElementById('s');
  const r = (window.report = { errors: [], stalls: 0, playing: false, times: [], mediaInfo: null });
  const player = flvjs.createPlayer({ type: 'flv', isLive: true, url: src });
  window.player = player;
  player.on(flvjs.Events.ERROR, (type, detail, info) => {
    r.errors.push(`${type}/${detail}/${info && info.msg}`);
  });
  player.on(flvjs.Events.MEDIA_INFO, (info) => {
    r.mediaInfo = {
      hasAudio: info.hasAudio, hasVideo: info.hasVideo,
      width: info.width, height: info.height,
      videoCodec: info.videoCodec, audioCodec: info.audioCodec,
    };
  });
  v.addEventListener('playing', () => { r.playing = true; });
  v.addEventListener('waiting', () => { if (r.playing) r.stalls += 1; });
  player.attachMediaElement(v);
  player.load();
  v.play().catch((e) => r.errors.push(`play/${e}`));
  setInterval(() => {
    if (r.playing) r.times.push(v.currentTime);
    s.textContent = `t=${v.currentTime.toFixed(2)}s stalls=${r.stalls}`;
  }, 500);
}, url);
await page.waitForTimeout(Number(seconds) * 1000);
await page.screenshot({ path: shot });
const report = await page.evaluate(() => {
  const v = document.getElementById('v');
  const q = v.getVideoPlaybackQuality();
  const r = window.report;
  r.videoWidth = v.videoWidth;
  r.videoHeight = v.videoHeight;
  r.decoded = q.totalVideoFrames;
  r.dropped = q.droppedVideoFrames;
  r.currentTime = v.currentTime;
  return r;
});
report.pageErrors = pageErrors;
await browser.close();
console.log(JSON.stringify(report));
