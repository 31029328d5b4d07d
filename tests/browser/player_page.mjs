// The page every player script here starts from: headless Chromium (Debian's,
// or $CHROMIUM) with autoplay allowed, a 640x360 muted video element `v`, a
// status line `s`, and the library at `lib` (a path under node_modules)
// loaded into it. Page errors are collected in `pageErrors`.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function openPlayerPage(lib) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const page = await browser.newPage({ viewport: { width: 640, height: 400 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.setContent(`<!doctype html><html><body style="margin:0;background:#111;color:#eee;font:14px sans-serif">
  <video id="v" muted autoplay playsinline style="width:640px;height:360px;background:#000"></video>
  <div id="s">starting</div></body></html>`);
  await page.addScriptTag({ path: path.join(here, 'node_modules', lib) });
  return { browser, page, pageErrors };
}
