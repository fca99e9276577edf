import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
const CODE_SERVER = process.env.HOME + '/.cache/wick/e2e/code-server-4.100.3';
const WICK_BIN = '/work/main/target/release/wick';
const ART = '/tmp/explore/art'; fs.rmSync(ART, {recursive:true, force:true}); fs.mkdirSync(ART, {recursive:true});
const VSIX = '/tmp/explore/wick.vsix';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-explore-'));
const dirs = Object.fromEntries(['ext', 'data', 'ws', 'xdg'].map((d) => [d, path.join(tmp, d)]));
Object.values(dirs).forEach((d) => fs.mkdirSync(d, { recursive: true }));
const t0 = Date.now();
const log = (msg) => console.log(`   [${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const wrapper = path.join(tmp, 'wick-server');
fs.writeFileSync(wrapper, `#!/bin/bash\necho $$ >> '${tmp}/pids'\nexec '${WICK_BIN}' "$@" --log-file '${ART}/wick-server.log' < <(exec tee -a '${ART}/lsp-in.log')\n`, { mode: 0o755 });
fs.writeFileSync(path.join(dirs.ws, 'stats.py'), 'def mean(values)\n    total = sum(values)\n    return total / len(values)\n');
const settings = {
    'workbench.startupEditor': 'none', 'workbench.tips.enabled': false, 'workbench.enableExperiments': false,
    'security.workspace.trust.enabled': false, 'telemetry.telemetryLevel': 'off', 'update.mode': 'none',
    'extensions.autoCheckUpdates': false, 'extensions.autoUpdate': false, 'extensions.ignoreRecommendations': true,
    'chat.commandCenter.enabled': false, 'git.enabled': false, 'editor.inlineSuggest.enabled': true,
    'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' }, 'editor.suggestOnTriggerCharacters': false,
    'editor.wordBasedSuggestions': 'off', 'editor.autoClosingBrackets': 'never', 'editor.autoClosingQuotes': 'never',
    'wick.trace.server': 'messages',
};
fs.mkdirSync(path.join(dirs.data, 'User'), { recursive: true });
fs.writeFileSync(path.join(dirs.data, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
fs.mkdirSync(path.join(dirs.data, 'Machine'), { recursive: true });
fs.writeFileSync(path.join(dirs.data, 'Machine', 'settings.json'), JSON.stringify({ 'wick.serverPath': wrapper }));
const entry = path.join(CODE_SERVER, 'out', 'node', 'entry.js');
const env = { ...process.env, XDG_CONFIG_HOME: dirs.xdg, XDG_DATA_HOME: dirs.xdg, XDG_CACHE_HOME: dirs.xdg };
execFileSync(process.execPath, [entry, '--extensions-dir', dirs.ext, '--user-data-dir', dirs.data, '--install-extension', VSIX], { env, stdio: 'ignore' });
const port = 40000 + Math.floor(Math.random() * 10000);
const server = spawn(process.execPath, [entry, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', '--extensions-dir', dirs.ext, '--user-data-dir', dirs.data, dirs.ws], { env, detached: true, stdio: 'ignore' });
let browser, page;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
    for (let i = 0; i < 300; i++) { const ok = await new Promise((res) => { const c = net.connect(port, '127.0.0.1', () => { c.end(); res(true); }); c.on('error', () => res(false)); }); if (ok) break; await sleep(100); }
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium-headless-shell', args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-default-apps', '--no-first-run', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.ws)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
    log('workbench');
    const status = page.locator('.statusbar-item[id$="wick.status"]');
    for (let i = 0; i < 600; i++) { const t = ((await status.first().textContent({timeout:1000}).catch(() => '')) ?? '').trim(); if (/^wick( \d+ ms)?$/.test(t)) break; await sleep(100); }
    log('ready');
    await page.locator('.monaco-workbench').click({ position: { x: 640, y: 400 } });
    await page.keyboard.press('Control+P');
    await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
    await page.keyboard.type('stats.py');
    await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="stats.py"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('.monaco-editor.focused');
    log('opened');
    for (let i = 0; i < 200; i++) { if (await page.locator('.monaco-editor.focused .squiggly-error').count()) break; await sleep(100); }
    log('squiggles: ' + await page.locator('.monaco-editor.focused .squiggly-error').count());
    log('squiggle html: ' + await page.locator('.monaco-editor.focused .view-overlays').innerHTML());
    log('problems item: ' + await page.locator('.statusbar-item[id="status.problems"]').evaluate((e) => e.outerHTML).catch((e) => 'ERR ' + e));
    log('editors: ' + JSON.stringify(await page.locator('.monaco-editor').evaluateAll((es) => es.map((e) => [e.className, e.getAttribute('data-uri')]))));
    await page.locator('.monaco-editor.focused .squiggly-error').hover();
    await sleep(1500);
    log('hover: ' + JSON.stringify(await page.locator('.monaco-hover').allTextContents()));
    log('hover html: ' + (await page.locator('.monaco-hover').evaluateAll((es) => es.map((e) => e.outerHTML))).join('\n').slice(0, 3000));
    await page.screenshot({ path: path.join(ART, '0.png') });
    await page.mouse.move(5, 5);
    log('view lines: ' + JSON.stringify(await page.locator('.monaco-editor.focused .view-lines .view-line').allTextContents()));
    await page.screenshot({ path: path.join(ART, '1.png') });
    // cursor at line start
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('Control+Period');
    await sleep(2000);
    log('widget at col1: ' + await page.locator('.action-widget').evaluateAll((es) => es.map((e) => e.outerHTML)).catch((e) => 'ERR ' + e));
    await page.screenshot({ path: path.join(ART, '2.png') });
    await page.keyboard.press('Escape');
    await page.keyboard.press('End');
    await page.keyboard.press('Control+Period');
    await sleep(2000);
    log('widget at end: ' + await page.locator('.action-widget').evaluateAll((es) => es.map((e) => e.outerHTML)).catch((e) => 'ERR ' + e));
    await page.screenshot({ path: path.join(ART, '3.png') });
    const row = page.locator('.action-widget .monaco-list-row', { hasText: "Fix with wick: expected ':'" });
    log('rows fix: ' + await row.count());
    log('resolves before: ' + (fs.readFileSync(ART + '/lsp-in.log', 'utf8').match(/codeAction\/resolve/g) ?? []).length);
    await page.keyboard.press('ArrowDown');
    await sleep(1000);
    log('resolves after focus: ' + (fs.readFileSync(ART + '/lsp-in.log', 'utf8').match(/codeAction\/resolve/g) ?? []).length);
    log('focused: ' + await page.locator('.action-widget .monaco-list-row.action.focused').getAttribute('aria-label'));
    await page.keyboard.press('Enter');
    const ta = Date.now();
    for (let i = 0; i < 300; i++) { const l = await page.locator('.monaco-editor.focused .view-lines .view-line').allTextContents(); if (l.some((x) => x.includes('values):'))) break; await sleep(100); }
    log('applied after ' + (Date.now() - ta) + ' ' + JSON.stringify(await page.locator('.monaco-editor.focused .view-lines .view-line').allTextContents()));
    await page.screenshot({ path: path.join(ART, '4.png') });
    for (let i = 0; i < 100; i++) { if (!(await page.locator('.monaco-editor.focused .squiggly-error').count())) break; await sleep(100); }
    log('squiggles after: ' + await page.locator('.monaco-editor.focused .squiggly-error').count());
    log('problems item: ' + await page.locator('.statusbar-item[id="status.problems"]').evaluate((e) => e.outerHTML).catch((e) => 'ERR ' + e));
    await page.keyboard.press('Control+Z');
    for (let i = 0; i < 100; i++) { if ((await page.locator('.monaco-editor.focused .squiggly-error').count())) break; await sleep(100); }
    log('after undo: ' + JSON.stringify(await page.locator('.monaco-editor.focused .view-lines .view-line').allTextContents()) + ' squiggles ' + await page.locator('.monaco-editor.focused .squiggly-error').count());
    await page.keyboard.press('Control+Period');
    await sleep(1500);
    const rows = await page.locator('.action-widget .monaco-list-row').evaluateAll((es) => es.map((e) => [e.getAttribute('aria-label'), e.className, e.textContent]));
    log('resolves at end: ' + (fs.readFileSync(ART + '/lsp-in.log', 'utf8').match(/codeAction\/resolve/g) ?? []).length);
    log('rows: ' + JSON.stringify(rows));
    await page.screenshot({ path: path.join(ART, '5.png') });
} catch (e) { console.error(e); await page?.screenshot({ path: path.join(ART, 'fail.png') }); }
finally {
    await browser?.close().catch(() => {});
    try { process.kill(-server.pid, 'SIGTERM'); } catch {}
    fs.cpSync(path.join(dirs.data, 'logs'), path.join(ART, 'logs'), { recursive: true });
    fs.rmSync(tmp, { recursive: true, force: true });
}
