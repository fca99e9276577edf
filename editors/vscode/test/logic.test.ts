// Unit tests of the extension's pure parts (node --test, no VS Code needed).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fs from 'fs';
import * as path from 'path';
import { Backoff, findServer, serverKeys, serverSettings, statusView } from '../src/logic';

const base = { pathEnv: '/usr/bin:/opt/wick/bin', workspaceFolders: ['/ws'], home: '/home/u', trusted: true };

test('the serverPath setting wins and has no fallback', () => {
    const found = findServer({ ...base, setting: '~/bin/wick', isExecutable: () => false });
    assert.equal(found.path, undefined);
    assert.deepEqual(found.tried, ['/home/u/bin/wick']);
    assert.equal(findServer({ ...base, setting: '${workspaceFolder}/w', isExecutable: () => true }).path, '/ws/w');
    assert.equal(findServer({ ...base, setting: 'rel/w', isExecutable: () => true }).path, '/ws/rel/w');
});

test('PATH comes before the workspace build', () => {
    const exe = new Set(['/opt/wick/bin/wick', '/ws/target/release/wick']);
    assert.equal(findServer({ ...base, setting: '', isExecutable: (p) => exe.has(p) }).path, '/opt/wick/bin/wick');
    exe.delete('/opt/wick/bin/wick');
    assert.equal(findServer({ ...base, setting: '', isExecutable: (p) => exe.has(p) }).path, '/ws/target/release/wick');
    const none = findServer({ ...base, setting: '', isExecutable: () => false });
    assert.equal(none.path, undefined);
    assert.deepEqual(none.tried, ['wick on PATH', '/ws/target/release/wick']);
});

test('an untrusted workspace never runs its own binary', () => {
    const untrusted = { ...base, trusted: false, isExecutable: () => true };
    // No workspace build, and no serverPath that points inside a folder.
    const none = findServer({ ...untrusted, setting: '', pathEnv: '' });
    assert.equal(none.path, undefined);
    assert.ok(none.tried.some((t) => t.includes('not trusted')), none.tried.join());
    assert.equal(findServer({ ...untrusted, setting: '${workspaceFolder}/target/release/wick' }).path, undefined);
    assert.equal(findServer({ ...untrusted, setting: 'rel/w' }).path, undefined);
    assert.equal(findServer({ ...untrusted, setting: '/ws/../ws/w' }).path, undefined);
    // Binaries outside the workspace still run: PATH and an absolute setting.
    assert.equal(findServer({ ...untrusted, setting: '' }).path, '/usr/bin/wick');
    assert.equal(findServer({ ...untrusted, setting: '/opt/wick/bin/wick' }).path, '/opt/wick/bin/wick');
    assert.equal(findServer({ ...untrusted, setting: '/wsx/wick' }).path, '/wsx/wick');
});

test('server settings are the package.json keys minus the client-only ones', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const keys = serverKeys(pkg);
    assert.ok(keys.includes('maxTokens'));
    for (const k of ['serverPath', 'enable', 'trace.server']) {
        assert.ok(!keys.includes(k), k);
    }
    const defaults: Record<string, unknown> = {};
    for (const k of keys) {
        defaults[k] = pkg.contributes.configuration.properties[`wick.${k}`].default;
    }
    assert.deepEqual(serverSettings(keys, (k) => defaults[k]), defaults);
    assert.deepEqual(serverSettings(['a', 'b'], (k) => (k === 'a' ? 1 : undefined)), { a: 1 });
});

test('restarts back off, reset after a long run, and give up', () => {
    const b = new Backoff(1000, 4000, 60000, 4);
    b.started(0);
    assert.deepEqual([1, 2, 3, 4, 5].map((i) => b.crashed(i)), [1000, 2000, 4000, 4000, undefined]);
    b.started(100_000);
    assert.equal(b.crashed(200_000), 1000);
});

test('the status bar names each state', () => {
    const s = { server: 'running' as const, model: 'ready' as const, modelName: 'm.gguf', message: '', enabled: true };
    assert.equal(statusView(s).text, '$(check) wick');
    assert.equal(statusView({ ...s, latencyMs: 123.4 }).text, '$(check) wick 123 ms');
    assert.equal(statusView({ ...s, model: 'loading' }).text, '$(sync~spin) wick: loading model');
    assert.equal(statusView({ ...s, model: 'error', message: 'no model' }).error, true);
    assert.match(statusView({ ...s, model: 'error', message: 'no model' }).tooltip, /no model/);
    assert.equal(statusView({ ...s, enabled: false }).text, '$(circle-slash) wick: off');
    assert.equal(statusView({ ...s, server: 'notFound' }).text, '$(error) wick: server not found');
    assert.equal(statusView({ ...s, server: 'crashed', restartInS: 2 }).text, '$(warning) wick: restarting in 2 s');
});
