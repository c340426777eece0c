// tests/e2e/walk.mjs BASE_URL OUT_DIR - headless Chromium walks the reader site the
// way a reader does: home -> a post -> its tag -> its author -> a search -> the
// RSS feed, clicking links and typing in the search box, and checks each page
// (status, title, head tags, images with alt text, no console errors). It saves
// screenshots of the home and a post (light) and a post (dark) into OUT_DIR.
// Prints "ok NAME" / "FAIL NAME" lines and "N passed, N failed".
import { chromium } from 'playwright-core';

const [base, outDir] = process.argv.slice(2);
let passed = 0, failed = 0;
const ok = (name) => { console.log(`ok   ${name}`); passed++; };
const bad = (name, why) => { console.log(`FAIL ${name}${why ? ': ' + why : ''}`); failed++; };
async function check(name, fn) {
  try { const r = await fn(); if (r === false) bad(name); else ok(name); }
  catch (e) { bad(name, String(e.message || e).split('\n')[0]); }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
const page = await context.newPage();
const errors = [];
page.on('console', (m) => {
  // A failed load is reported by the response handler below, with its URL.
  if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
});
page.on('pageerror', (e) => errors.push(String(e)));
page.on('response', (r) => {
  if (r.status() >= 400 && !r.url().includes('/no-such-page/')) errors.push(`${r.status()} ${r.url()}`);
});

async function commonChecks(what) {
  await check(`${what}: head has title, description, canonical, og:title`, async () => {
    const t = await page.title();
    const d = await page.getAttribute('meta[name="description"]', 'content');
    const c = await page.getAttribute('link[rel="canonical"]', 'href');
    const og = await page.getAttribute('meta[property="og:title"]', 'content');
    if (!t || !d || !c || !og) throw new Error(`title=${t} description=${d} canonical=${c}`);
  });
  await check(`${what}: every image has alt text`, async () => {
    const missing = await page.$$eval('img', (imgs) => imgs.filter((i) => !i.getAttribute('alt')).length);
    if (missing) throw new Error(`${missing} without alt`);
  });
  await check(`${what}: every image loads`, async () => {
    const broken = await page.$$eval('img', (imgs) => imgs.filter((i) => i.complete && i.naturalWidth === 0).map((i) => i.src));
    if (broken.length) throw new Error(broken.join(' '));
  });
}

try {
  let res = await page.goto(base + '/', { waitUntil: 'load' });
  await check('home: 200', () => res.status() === 200);
  await check('home: shows post cards', async () => (await page.$$('article.card')).length >= 5);
  await commonChecks('home');
  if (outDir) await page.screenshot({ path: `${outDir}/home.png` });

  const first = page.locator('article.card h2 a').first();
  const postTitle = (await first.textContent()).trim();
  await Promise.all([page.waitForNavigation(), first.click()]);
  await check(`post: clicking "${postTitle}" opens it`, async () =>
    (await page.textContent('h1.post__title')).trim() === postTitle);
  await check('post: JSON-LD is a BlogPosting', async () => {
    const ld = JSON.parse(await page.textContent('script[type="application/ld+json"]'));
    return ld['@type'] === 'BlogPosting' && ld.headline === postTitle;
  });
  await check('post: reading time shown', async () => /min read/.test(await page.textContent('.post__header .byline')));
  await commonChecks('post');
  const postUrl = page.url();
  if (outDir) {
    // The README's picture: the demo's first post (the walk's own if it is gone).
    const demo = await page.goto(base + '/why-we-built-our-blog-on-the-beam-model-in-c/');
    if (demo.status() !== 200) await page.goto(postUrl);
    await page.setViewportSize({ width: 1100, height: 1000 });
    await page.screenshot({ path: `${outDir}/post.png` });
    await page.setViewportSize({ width: 1100, height: 760 });
    await page.goto(postUrl);
  }

  const tag = page.locator('.post__tags a').first();
  const tagName = (await tag.textContent()).trim();
  await Promise.all([page.waitForNavigation(), tag.click()]);
  await check(`tag: "${tagName}" page lists posts`, async () =>
    (await page.textContent('.intro__title')).trim() === tagName && (await page.$$('article.card')).length > 0);
  await commonChecks('tag');

  await page.goto(postUrl);
  const author = page.locator('.post__header .byline a').first();
  const authorName = (await author.textContent()).trim();
  await Promise.all([page.waitForNavigation(), author.click()]);
  await check(`author: "${authorName}" page lists posts`, async () =>
    (await page.textContent('.intro__title')).trim() === authorName && (await page.$$('article.card')).length > 0);
  await commonChecks('author');

  await page.fill('#q', 'supervisor');
  await Promise.all([page.waitForNavigation(), page.press('#q', 'Enter')]);
  await check('search: typing "supervisor" finds posts', async () =>
    page.url().includes('/search?q=supervisor') && (await page.$$('article.card')).length > 0);
  await check('search: the box keeps the query', async () => (await page.inputValue('#q')) === 'supervisor');

  const rss = page.locator('footer a', { hasText: 'RSS' }).first();
  const [resp] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/rss/')), rss.click()]);
  await check('feed: the footer RSS link is an RSS document', async () => {
    const body = await resp.text();
    return resp.status() === 200 && /rss\+xml/.test(resp.headers()['content-type']) && body.includes('<rss version="2.0"');
  });

  res = await page.goto(base + '/no-such-page/');
  await check('404: a themed page with status 404', async () =>
    res.status() === 404 && (await page.textContent('h1')).includes('not found'));

  const dark = await browser.newContext({ viewport: { width: 1100, height: 760 }, colorScheme: 'dark' });
  const dp = await dark.newPage();
  await dp.goto(postUrl);
  await check('dark mode: the page background is dark', async () => {
    const bg = await dp.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    return r + g + b < 200;
  });
  if (outDir) {
    await dp.evaluate(() => window.scrollTo(0, 420));
    await dp.screenshot({ path: `${outDir}/post-dark.png` });
  }
  await check('no console errors on the way', () => {
    if (errors.length) throw new Error(errors.join(' | '));
  });
} catch (e) {
  bad('walk', String(e.message || e).split('\n')[0]);
} finally {
  await browser.close();
}
console.log(`walk.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
