// tests/e2e/admin.mjs ADMIN_URL CLIENT_URL EMAIL PASSWORD OUT_DIR - headless Chromium
// drives the admin as an editor does: sign in, write a post, watch the live
// preview (editor.js posting to /admin/preview), use the no-JS Preview button,
// publish, and then read the post on the reader site (oneblog-client, or skipped
// when CLIENT_URL is "-"). Saves the editor's screenshot as OUT_DIR/admin-editor.png.
// No console errors are allowed (the admin's CSP forbids inline scripts: a
// violation would show here). Prints "ok NAME" / "FAIL NAME" and "N passed, N failed".
import { chromium } from 'playwright-core';

const [admin, client, email, password, outDir] = process.argv.slice(2);
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
const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
const page = await context.newPage();
const errors = [];
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(String(e)));

const title = 'Written in headless Chromium';
const slug = 'written-in-headless-chromium';
let postUrl = '';

await check('sign in', async () => {
  await page.goto(`${admin}/admin/posts`);
  if (!page.url().endsWith('/admin/login')) throw new Error(`not sent to the login: ${page.url()}`);
  await page.fill('input[name="email"]', email);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForURL(/\/admin\/posts$/), page.click('button[type="submit"]')]);
  return (await page.textContent('.whoami')).includes('owner');
});

await check('open the editor for a new post', async () => {
  await Promise.all([page.waitForURL(/\/admin\/posts\/new$/), page.click('a.btn[href="/admin/posts/new"]')]);
  await page.waitForSelector('#markdown');
});

await check('write: title, Markdown, tags, SEO, feature image', async () => {
  await page.fill('input[name="title"]', title);
  await page.fill('input[name="tags"]', 'Chromium, Testing');
  await page.fill('[name="meta_description"]', 'A post written by the end-to-end test.');
  await page.fill('input[name="feature_image_alt"]', 'none');
  await page.click('#markdown');
  await page.keyboard.type('# Hello from the editor\n\nThis post was **typed into the admin** by headless Chromium.\n\n- live preview\n- publish\n');
});

await check('the live preview renders the Markdown (server-side, via editor.js)', async () => {
  await page.waitForFunction(() => {
    const p = document.getElementById('preview');
    return p && p.querySelector('h1') && p.innerHTML.includes('<strong>typed into the admin</strong>') &&
      p.innerHTML.includes('<li>publish</li>');
  }, null, { timeout: 30000 }); // ends when it renders; generous for a loaded ASan run
});

await check('screenshot of the editor', async () => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${outDir}/admin-editor.png` });
});

await check('the Preview button (the no-JS path) renders it too, saving nothing', async () => {
  await Promise.all([page.waitForURL(/\/admin\/posts$/), page.click('button[value="preview"]')]);
  const html = await page.innerHTML('#preview');
  if (!html.includes('<strong>typed into the admin</strong>')) throw new Error('no preview');
  if ((await page.inputValue('input[name="title"]')) !== title) throw new Error('title lost');
});

await check('publish', async () => {
  await Promise.all([page.waitForURL(/\/admin\/posts\/\d+\?notice=published$/), page.click('button[value="publish"]')]);
  postUrl = page.url().replace(/\?.*$/, '');
  const status = await page.textContent('h1 .status');
  if (status.trim() !== 'published') throw new Error(`status ${status}`);
  return (await page.textContent('.notice')).includes('Published');
});

await check('the post list shows it as published', async () => {
  await page.goto(`${admin}/admin/posts?status=published`);
  const row = page.locator('tr', { hasText: title });
  return (await row.count()) === 1 && (await row.textContent()).includes('published');
});

if (client && client !== '-') {
  await check('the post appears on the reader site (oneblog-client)', async () => {
    const reader = await context.newPage();
    let body = '';
    for (let i = 0; i < 300; i++) {         // bounded (30 s+): the client learns of it by content_changed
      const r = await reader.goto(`${client}/${slug}/`);
      if (r.status() === 200) { body = await reader.content(); break; }
      await reader.waitForTimeout(100);
    }
    await reader.close();
    return body.includes(title) && body.includes('<strong>typed into the admin</strong>');
  });
}

await check('no console errors (CSP kept)', async () => {
  if (errors.length) throw new Error(errors.join(' | '));
});

await browser.close();
console.log(`admin.mjs: ${passed} passed, ${failed} failed (post ${postUrl})`);
process.exit(failed ? 1 : 0);
