// End-to-end test in real VS Code (code-server) with the real server and
// model, driven through headless Chromium. Run by scripts/e2e-vscode, which
// installs everything and sets CODE_SERVER, WICK_BIN, ART and VSIX.
//
// 1. the status bar reaches "wick" (model ready);
// 2. typing in a Python file shows ghost text from the model, Alt+] and
//    Alt+[ (VS Code's next/previous) cycle through several suggestions, Tab
//    accepts the one shown,
//    and the item's command (wick.didAccept, run through the server) records
//    it as accepted in the server's statistics file (under XDG_DATA_HOME);
// 3. Ctrl+Space lists wick's completion item, Enter inserts it;
// 4. a killed server comes back (status "restarting in N s", then ready);
// 5. a missing ':' is squiggled and its hover says "expected ':'" (wick);
//    Ctrl+. lists "Insert ':'" and "Fix with wick: expected ':'"; choosing
//    the second goes through codeAction/resolve and the model and adds the
//    ':' and nothing else, and the squiggle clears; after an undo, "Insert
//    ':'" does the same without the model;
// 6. a missing server binary shows "server not found", and the editor still edits.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const { CODE_SERVER, WICK_BIN, ART, VSIX } = process.env;
for (const [k, v] of Object.entries({ CODE_SERVER, WICK_BIN, ART, VSIX })) {
    if (!v) {
        throw new Error(`${k} is not set (run scripts/e2e-vscode)`);
    }
}
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium-headless-shell';
const FIRST_SUGGESTION_MS = 120_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-e2e-vscode-'));
const dirs = Object.fromEntries(['ext', 'data', 'ws', 'xdg'].map((d) => [d, path.join(tmp, d)]));
Object.values(dirs).forEach((d) => fs.mkdirSync(d, { recursive: true }));
const t0 = Date.now();
const timings = {};
const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`   [${since()}] ${msg}`);

// The server, through a wrapper that records each started pid (for the
// crash step), sends the server's log to the artifacts, and copies what the
// client sends to lsp-client.log (to see which requests VS Code made). exec
// keeps the recorded pid the server's; tee ends when the client closes the pipe.
const pids = path.join(tmp, 'server.pids');
const lspClientLog = path.join(ART, 'lsp-client.log');
const wrapper = path.join(tmp, 'wick-server');
fs.writeFileSync(
    wrapper,
    `#!/bin/bash\necho $$ >> '${pids}'\nexport WICK_LOG='${process.env.WICK_LOG ?? 'info,wick::lsp=debug'}'\nexec '${WICK_BIN}' "$@" --log-file '${ART}/wick-server.log' < <(exec tee -a '${lspClientLog}')\n`,
    { mode: 0o755 },
);

const SOURCE = `import math


def is_prime(n):
    """Return True if n is a prime number."""
    if n < 2:
        return False
    for i in range(2, int(math.sqrt(n)) + 1):
        if n % i == 0:
            return False
    return True


def primes_below(limit):
    """Return the list of primes below limit."""
`;
const TYPED = '    return [p for p in ';
const file = path.join(dirs.ws, 'primes.py');
fs.writeFileSync(file, SOURCE);
// A syntax error for step 5: the `def` lacks its ':'.
const BROKEN = `def mean(values)
    total = sum(values)
    return total / len(values)
`;
const FIXED = BROKEN.replace('def mean(values)', 'def mean(values):');
const statsFile = path.join(dirs.ws, 'stats.py');
fs.writeFileSync(statsFile, BROKEN);

const settingsFile = path.join(dirs.data, 'User', 'settings.json');
const settings = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'chat.commandCenter.enabled': false,
    'git.enabled': false,
    // Only wick's suggestions, and only when asked, so Tab and Enter are unambiguous.
    'editor.inlineSuggest.enabled': true,
    'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' },
    'editor.suggestOnTriggerCharacters': false,
    'editor.wordBasedSuggestions': 'off',
    'editor.autoClosingBrackets': 'never',
    'editor.autoClosingQuotes': 'never',
    // The editor's text is read from its view lines: no whitespace markers in them.
    'editor.renderWhitespace': 'none',
    // As on the desktop: files are written on Ctrl+S only (VS Code for the web
    // saves 1 s after an edit by default).
    'files.autoSave': 'off',
};
fs.mkdirSync(path.dirname(settingsFile), { recursive: true });
fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
// wick.serverPath is machine-overridable: in code-server it belongs to the
// remote ("Machine") settings; VS Code drops it from the user settings of a
// remote window once it re-reads them.
const machineSettings = path.join(dirs.data, 'Machine', 'settings.json');
fs.mkdirSync(path.dirname(machineSettings), { recursive: true });
fs.writeFileSync(machineSettings, JSON.stringify({ 'wick.serverPath': wrapper }, null, 2));

const entry = path.join(CODE_SERVER, 'out', 'node', 'entry.js');
const env = { ...process.env, XDG_CONFIG_HOME: dirs.xdg, XDG_DATA_HOME: dirs.xdg, XDG_CACHE_HOME: dirs.xdg };
execFileSync(process.execPath, [entry, '--extensions-dir', dirs.ext, '--user-data-dir', dirs.data, '--install-extension', VSIX], {
    env,
    stdio: ['ignore', fs.openSync(path.join(ART, 'install-extension.log'), 'w'), 'inherit'],
});
log('extension installed from the .vsix');

const port = await freePort();
const codeServerLog = fs.openSync(path.join(ART, 'code-server.log'), 'w');
const server = spawn(
    process.execPath,
    [
        entry,
        '--auth', 'none',
        '--bind-addr', `127.0.0.1:${port}`,
        '--disable-telemetry',
        '--disable-update-check',
        '--disable-workspace-trust',
        '--disable-getting-started-override',
        '--extensions-dir', dirs.ext,
        '--user-data-dir', dirs.data,
        dirs.ws,
    ],
    { env, detached: true, stdio: ['ignore', codeServerLog, codeServerLog] },
);

let browser;
let page;
let verdict = 1;
try {
    await waitForPort(port, 60_000);
    log(`code-server on 127.0.0.1:${port}`);
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
            '--no-sandbox',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--disable-default-apps',
            '--no-first-run',
            '--disable-dev-shm-usage',
        ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (e) => fs.appendFileSync(path.join(ART, 'browser-errors.log'), `${e}\n`));
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.ws)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 120_000 });
    timings.workbenchMs = Date.now() - t0;
    log('workbench loaded');

    // 1. The model loads and the status bar says so.
    // Our item, not the client's progress item ("wick: loading model: ...").
    const status = page.locator('.statusbar-item[id$="wick.status"]');
    const statusText = async () => ((await status.first().textContent({ timeout: 1000 }).catch(() => '')) ?? '').trim();
    const seen = new Set();
    await waitFor(
        async () => {
            const text = await statusText();
            seen.add(text);
            return /^wick( \d+ ms)?$/.test(text);
        },
        FIRST_SUGGESTION_MS,
        'status bar "wick" (model ready)',
        statusText,
    );
    timings.readyMs = Date.now() - t0;
    log(`status bar went through ${JSON.stringify([...seen].filter((t) => t))}`);
    // A warm page cache loads the model between two polls: the loading
    // state may pass unseen (the unit tests cover its text).
    if (!seen.has('wick: loading model')) log('the loading state passed between two polls');
    log(`status bar: "${await statusText()}"`);

    // 2. Ghost text while typing; Tab accepts it.
    await openFile('primes.py');
    await page.keyboard.press('Control+End');
    await page.keyboard.type(TYPED, { delay: 60 });
    const typedAt = Date.now();
    const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
    const ghostText = async () => nbsp((await ghost.allTextContents()).join(''));
    let retriggered = false;
    await waitFor(
        async () => {
            if ((await ghostText()).trim()) {
                return true;
            }
            // A cold first completion can outlast the server's time budget;
            // ask again as a user would (Alt+\ triggers inline suggestions).
            if (!retriggered && Date.now() - typedAt > 30_000) {
                retriggered = true;
                log('no ghost text after 30 s; triggering inline suggestions again');
                await page.keyboard.press('Alt+Backslash');
            }
            return false;
        },
        FIRST_SUGGESTION_MS,
        'ghost text',
        ghostText,
    );
    timings.firstGhostTextMs = Date.now() - typedAt;
    // The first line is inline decorations (one per token) on the cursor's line.
    const firstLine = nbsp((await page.locator('.monaco-editor .ghost-text-decoration').allTextContents()).join(''));
    log(`ghost text after ${timings.firstGhostTextMs} ms: ${JSON.stringify(firstLine)}`);
    await page.screenshot({ path: path.join(ART, 'ghost-text.png') });
    // VS Code's own "show next inline suggestion" (Alt+]) asks the server
    // again (an invoked request: several suggestions) and shows the next.
    const firstGhost = firstLine;
    const nextAt = Date.now();
    await page.keyboard.press('Alt+BracketRight');
    const decorations = async () => nbsp((await page.locator('.monaco-editor .ghost-text-decoration').allTextContents()).join(''));
    await waitFor(
        async () => {
            const t = await decorations();
            return t.trim() !== '' && t !== firstGhost;
        },
        60_000,
        'the next suggestion (Alt+])',
        decorations,
    );
    timings.nextSuggestionMs = Date.now() - nextAt;
    const secondLine = await decorations();
    log(`Alt+] after ${timings.nextSuggestionMs} ms: ${JSON.stringify(secondLine)}`);
    await page.screenshot({ path: path.join(ART, 'next-suggestion.png') });
    // Alt+[ goes back to the first, Alt+] to the second again.
    await page.keyboard.press('Alt+BracketLeft');
    await waitFor(async () => (await decorations()) === firstGhost, 10_000, 'the first suggestion again (Alt+[)', decorations);
    await page.keyboard.press('Alt+BracketRight');
    await waitFor(async () => (await decorations()) === secondLine, 10_000, 'the second suggestion again (Alt+])', decorations);
    const acceptedGhost = secondLine;
    await page.keyboard.press('Tab');
    await save();
    const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(TYPED)) ?? '';
    check(line.length > TYPED.length, `Tab inserted the suggestion: ${JSON.stringify(line)}`);
    check(line.trimEnd() === (TYPED + acceptedGhost).trimEnd(), `the accepted line is the ghost text shown: ${JSON.stringify(line)}`);
    await page.screenshot({ path: path.join(ART, 'accepted.png') });
    log(`accepted: ${JSON.stringify(line)}`);
    const statsPath = path.join(dirs.xdg, 'wick', 'stats.jsonl');
    const statsText = () => (fs.existsSync(statsPath) ? fs.readFileSync(statsPath, 'utf8') : '');
    await waitFor(() => statsText().includes('"outcome":"accepted"'), 10000, `an accepted record in ${statsPath}`, statsText);
    check(statsText().includes('"candidate":1'), `the record says the second suggestion was taken: ${statsText()}`);
    log('the statistics file records the accept (the second suggestion)');
    const latency = await statusText();
    check(/^wick \d+ ms$/.test(latency), `status bar shows the last latency: "${latency}"`);

    // 3. A completion item on request.
    await page.keyboard.press('Control+End');
    await page.keyboard.press('Enter');
    await page.keyboard.type('count = len(primes_b', { delay: 60 });
    await page.keyboard.press('Escape');
    const askedAt = Date.now();
    await page.keyboard.press('Control+Space');
    const row = page.locator('.suggest-widget .monaco-list-row');
    await waitFor(async () => (await row.count()) > 0, 60_000, 'a completion item');
    timings.completionItemMs = Date.now() - askedAt;
    const label = nbsp((await row.first().locator('.label-name').textContent()) ?? '').trim();
    log(`completion item after ${timings.completionItemMs} ms: ${JSON.stringify(label)}`);
    check(label.startsWith('primes_b'), `the item continues the typed word: ${JSON.stringify(label)}`);
    await page.screenshot({ path: path.join(ART, 'completion-item.png') });
    await page.keyboard.press('Enter');
    await save();
    const afterItem = fs.readFileSync(file, 'utf8');
    check(afterItem.includes(`count = len(${label}`), `Enter inserted the item: ${JSON.stringify(afterItem.split('\n').slice(-3))}`);

    // The toggle command, from the command palette.
    const command = async (title) => {
        await page.keyboard.press('F1');
        await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
        await page.keyboard.type(title);
        await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="${title}"]`);
        await page.keyboard.press('Enter');
    };
    await command('wick: Toggle Completions');
    await waitFor(async () => (await statusText()) === 'wick: off', 10_000, 'status "wick: off"', statusText);
    await command('wick: Toggle Completions');
    await waitFor(async () => /^wick \d+ ms$/.test(await statusText()), 10_000, 'status "wick N ms" again', statusText);
    log('toggled completions off and on');

    // 4. A crashed server is restarted with a back-off.
    const before = readPids();
    process.kill(before.at(-1), 'SIGKILL');
    log(`killed the server (pid ${before.at(-1)})`);
    await waitFor(async () => /restarting in \d+ s/.test(await statusText()), 10_000, 'status "restarting in N s"', statusText);
    log(`status bar: "${await statusText()}"`);
    await page.screenshot({ path: path.join(ART, 'restarting.png') });
    await waitFor(async () => /^wick( \d+ ms)?$/.test(await statusText()), 60_000, 'status "wick" after the restart', statusText);
    check(readPids().length === before.length + 1, `one new server process: ${readPids()}`);
    log('server restarted');

    // 5. A syntax error: wick's diagnostic and its quick fixes, from the
    // light-bulb menu. Before step 6, which takes the server away.
    const openedAt = Date.now();
    await openFile('stats.py');
    const editor = page.locator('.monaco-editor[data-uri$="/stats.py"]');
    // wick's diagnostics are information by default (blue squiggles).
    const squiggles = editor.locator('.squiggly-info');
    const problems = async () => (await page.locator('#status\\.problems').getAttribute('aria-label', { timeout: 1000 }).catch(() => '')) ?? '';
    const editorState = async () => ({ text: await editorText(editor), squiggles: await squiggles.count(), problems: await problems() });
    await waitFor(async () => (await squiggles.count()) > 0, 30_000, "wick's diagnostic (a squiggle) in stats.py", editorState);
    timings.diagnosticMs = Date.now() - openedAt;
    check((await squiggles.count()) === 1, `one squiggle for one missing ':': ${JSON.stringify(await editorState())}`);
    log(`diagnostic shown ${timings.diagnosticMs} ms after Ctrl+P; status bar: "${await problems()}"`);
    // Its hover: the message, then the source.
    const box = await squiggles.first().boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const marker = page.locator('.monaco-hover .marker.hover-contents');
    await waitFor(async () => (await marker.count()) > 0, 10_000, 'the hover over the squiggle');
    const hover = (await marker.first().locator('span').allTextContents()).map(nbsp);
    check(hover[0] === "expected ':'" && hover.includes('wick'), `the hover says "expected ':'" from wick: ${JSON.stringify(hover)}`);
    log(`hover: ${JSON.stringify(hover)}`);
    await page.mouse.move(5, 5);
    await page.keyboard.press('Escape');

    const before5 = resolveTitles().length;
    await quickFix("Fix with wick: expected ':'", ["Insert ':'", "Fix with wick: expected ':'"], 'quick-fix-menu.png');
    const chosenAt = Date.now();
    // The model runs now (codeAction/resolve): seconds on 2 cores.
    await waitFor(async () => (await editorText(editor)) !== BROKEN, 90_000, 'the fix to change the text', editorState);
    const fixedAt = Date.now();
    timings.fixWithWickMs = fixedAt - chosenAt;
    check((await editorText(editor)) === FIXED, `"Fix with wick" added the ':' and nothing else: ${JSON.stringify(await editorText(editor))}`);
    const resolved = resolveTitles().slice(before5);
    check(resolved.includes("Fix with wick: expected ':'"), `VS Code resolved the fix through codeAction/resolve: ${JSON.stringify(resolved)}`);
    log(`"Fix with wick" applied after ${timings.fixWithWickMs} ms`);
    timings.fixDiagnosticClearMs = (await squigglesClear(squiggles, editorState)) - fixedAt;
    await page.screenshot({ path: path.join(ART, 'fixed-with-wick.png') });
    log(`diagnostic cleared ${timings.fixDiagnosticClearMs} ms after the fix`);

    // The known repair, which carries its edit: undo, then "Insert ':'".
    await page.keyboard.press('Control+Z');
    await waitFor(async () => (await editorText(editor)) === BROKEN && (await squiggles.count()) === 1, 15_000, 'the undone fix and its squiggle', editorState);
    const before5b = resolveTitles().length;
    await quickFix("Insert ':'", ["Insert ':'", "Fix with wick: expected ':'"]);
    const insertedAt = Date.now();
    await waitFor(async () => (await editorText(editor)) !== BROKEN, 10_000, `"Insert ':'" to change the text`, editorState);
    timings.insertColonMs = Date.now() - insertedAt;
    check((await editorText(editor)) === FIXED, `"Insert ':'" added the ':' and nothing else: ${JSON.stringify(await editorText(editor))}`);
    await squigglesClear(squiggles, editorState);
    await save(statsFile);
    check(fs.readFileSync(statsFile, 'utf8') === FIXED, `stats.py on disk is fixed: ${JSON.stringify(fs.readFileSync(statsFile, 'utf8'))}`);
    log(`"Insert ':'" applied after ${timings.insertColonMs} ms (resolve requests: ${JSON.stringify(resolveTitles().slice(before5b))}); saved`);
    await page.keyboard.press('Control+W');
    await page.waitForSelector('.tab.active[aria-label*="primes.py"]');

    // 6. A missing binary: a clear message, and the editor keeps editing.
    // Through the Settings editor, as a user would (it writes settings.json
    // and VS Code applies the change at once).
    await page.keyboard.press('Control+Comma');
    await page.waitForSelector('.settings-editor', { state: 'visible' });
    await page.keyboard.type('wick.serverPath');
    // A machine-overridable setting: in code-server it lives under "Remote".
    await page.locator('.settings-tabs-widget .action-label', { hasText: 'Remote' }).click();
    const pathInput = page.locator('.settings-editor input[aria-label="wick.serverPath"]');
    await pathInput.waitFor({ state: 'visible' });
    await pathInput.fill(path.join(tmp, 'no-such-wick'));
    await pathInput.press('Enter');
    await waitFor(async () => (await statusText()) === 'wick: server not found', 30_000, 'status "wick: server not found"', statusText);
    const toast = page.locator('.notifications-toasts').filter({ hasText: 'wick: server binary not found' });
    await waitFor(async () => (await toast.count()) > 0, 10_000, 'an error notification naming the missing binary');
    await page.screenshot({ path: path.join(ART, 'server-not-found.png') });
    await page.keyboard.press('Control+W');
    await page.waitForSelector('.tab.active[aria-label*="primes.py"]');
    await page.locator('.monaco-editor .view-lines').first().click();
    await page.keyboard.press('Control+End');
    await page.keyboard.type('\n# still an editor\n', { delay: 20 });
    await save();
    check(fs.readFileSync(file, 'utf8').includes('# still an editor'), 'typing and saving work without a server');
    log('missing binary: status bar and notification shown, editor still edits');

    verdict = 0;
} catch (e) {
    console.error(`e2e-vscode: FAILED: ${e.stack ?? e}`);
    if (page) {
        await page.screenshot({ path: path.join(ART, 'failure.png') }).catch(() => {});
    }
} finally {
    timings.totalMs = Date.now() - t0;
    fs.writeFileSync(path.join(ART, 'timings.json'), JSON.stringify(timings, null, 2));
    log(`timings: ${JSON.stringify(timings)}`);
    await browser?.close().catch(() => {});
    try {
        process.kill(-server.pid, 'SIGTERM');
    } catch {}
    // VS Code's logs (the extension's output channel among them) and settings.
    for (const p of ['logs', 'User/settings.json', 'Machine/settings.json']) {
        const from = path.join(dirs.data, p);
        if (fs.existsSync(from)) {
            fs.cpSync(from, path.join(ART, 'vscode', p), { recursive: true });
        }
    }
    fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(verdict);

async function openFile(name) {
    await page.locator('.monaco-workbench').click({ position: { x: 640, y: 400 } });
    await page.keyboard.press('Control+P');
    await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
    await page.keyboard.type(name);
    await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="${name}"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector(`.tab[aria-label*="${name}"]`);
    await page.waitForSelector('.monaco-editor.focused');
}

// Ctrl+. with the cursor at the end of the error's line (after the `)`),
// checks the menu lists `want`, then chooses `title` with the arrow keys
// and Enter.
async function quickFix(title, want, screenshot) {
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('End');
    const askedAt = Date.now();
    await page.keyboard.press('Control+Period');
    const rows = page.locator('.action-widget .monaco-list-row.action');
    const titles = async () => rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
    // VS Code says "No code actions available" in an overlay message.
    const overlay = async () => nbsp((await page.locator('.monaco-editor-overlaymessage').allTextContents()).join(' '));
    await waitFor(async () => (await rows.count()) > 0, 20_000, 'the quick-fix menu', overlay);
    const listed = await titles();
    log(`quick-fix menu after ${Date.now() - askedAt} ms: ${JSON.stringify(listed)}`);
    for (const w of want) {
        check(listed.includes(w), `the quick-fix menu lists ${JSON.stringify(w)}: ${JSON.stringify(listed)}`);
    }
    if (screenshot) {
        await page.screenshot({ path: path.join(ART, screenshot) });
    }
    const focused = async () => (await rows.evaluateAll((els) => els.filter((e) => e.classList.contains('focused')).map((e) => e.getAttribute('aria-label'))))[0];
    for (let i = 0; i <= listed.length && (await focused()) !== title; i++) {
        await page.keyboard.press('ArrowDown');
    }
    check((await focused()) === title, `${JSON.stringify(title)} is focused in the menu: ${JSON.stringify(await focused())}`);
    await page.keyboard.press('Enter');
    await waitFor(async () => (await rows.count()) === 0, 10_000, 'the quick-fix menu to close');
}

// Until the editor has no squiggle, for a second in a row (a republished
// diagnostic would come back within wick's 300 ms debounce); returns when
// they went.
async function squigglesClear(squiggles, show) {
    let clearSince;
    await waitFor(
        async () => {
            if ((await squiggles.count()) > 0) {
                clearSince = undefined;
                return false;
            }
            clearSince ??= Date.now();
            return Date.now() - clearSince >= 1000;
        },
        20_000,
        'the squiggle to clear (and stay cleared for 1 s)',
        show,
    );
    return clearSince;
}

// The editor's text, from its rendered lines (all of a short file are).
async function editorText(editor) {
    const lines = await editor
        .locator('.view-lines .view-line')
        .evaluateAll((els) => els.map((e) => [parseFloat(e.style.top) || 0, e.textContent ?? '']).sort((a, b) => a[0] - b[0]).map((l) => l[1]));
    return nbsp(lines.join('\n'));
}

// The titles of the code actions VS Code sent to codeAction/resolve, in order.
function resolveTitles() {
    const raw = fs.existsSync(lspClientLog) ? fs.readFileSync(lspClientLog, 'utf8') : '';
    return raw
        .split(/Content-Length: \d+\r\n(?:[^\r\n]+\r\n)*\r\n/)
        .slice(1)
        .flatMap((body) => {
            try {
                return [JSON.parse(body)];
            } catch {
                return []; // the last message, half-written
            }
        })
        .filter((m) => m.method === 'codeAction/resolve')
        .map((m) => m.params?.title);
}

async function save(target = file) {
    const before = fs.readFileSync(target, 'utf8');
    await page.keyboard.press('Control+S');
    // Until the text on disk changed and stayed the same for 200 ms (a save
    // may be seen half-written).
    let last = before;
    let stableSince = Date.now();
    await waitFor(
        async () => {
            const now = fs.readFileSync(target, 'utf8');
            if (now !== last) {
                last = now;
                stableSince = Date.now();
            }
            return now !== before && Date.now() - stableSince >= 200;
        },
        10_000,
        'the file saved',
    );
}

function readPids() {
    return fs.readFileSync(pids, 'utf8').trim().split('\n').map(Number);
}

function nbsp(s) {
    return (s ?? '').replace(/\u00a0/g, ' ');
}

function check(ok, what) {
    if (!ok) {
        throw new Error(`check failed: ${what}`);
    }
}

async function waitFor(cond, ms, what, show) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (await cond()) {
            return;
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out after ${ms} ms waiting for ${what}${show ? ` (now: ${JSON.stringify(await show())})` : ''}`);
}

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
        s.on('error', reject);
    });
}

async function waitForPort(port, ms) {
    await waitFor(
        () =>
            new Promise((resolve) => {
                const c = net.connect(port, '127.0.0.1', () => {
                    c.end();
                    resolve(true);
                });
                c.on('error', () => resolve(false));
            }),
        ms,
        `code-server on port ${port}`,
    );
}
