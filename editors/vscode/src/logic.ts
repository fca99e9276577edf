// The extension's decisions as plain functions: where the server binary is,
// which settings go to the server, how long to wait before a restart, and
// what the status bar says. No `vscode` import, so `node --test` covers them.

import * as path from 'path';

/** `wick.*` settings that only the extension reads; every other one is the server's. */
export const CLIENT_ONLY = ['serverPath', 'enable', 'trace.server'];

export interface FindOptions {
    /** The `wick.serverPath` setting; empty when unset. */
    setting: string;
    pathEnv: string | undefined;
    workspaceFolders: string[];
    home: string;
    isExecutable: (p: string) => boolean;
    /**
     * Whether the workspace is trusted (VS Code's Workspace Trust). An
     * untrusted workspace cannot make the extension run its own files: no
     * `target/release/wick` from a folder, no serverPath inside a folder.
     */
    trusted: boolean;
}

export interface Found {
    path?: string;
    /** Every place looked at, for the error message. */
    tried: string[];
}

/** Whether `p` is inside one of `folders`. */
function inside(p: string, folders: string[]): boolean {
    return folders.some((f) => {
        const rel = path.relative(f, p);
        return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
    });
}

/**
 * The setting (no fallback when it is set), then `wick` on PATH, then
 * `target/release/wick` in a workspace folder (trusted workspaces only).
 */
export function findServer(o: FindOptions): Found {
    const tried: string[] = [];
    const setting = o.setting.trim();
    if (setting) {
        let p = setting.replace(/^~(?=$|\/)/, o.home);
        if (o.workspaceFolders.length > 0) {
            p = p.replace(/\$\{workspaceFolder\}/g, o.workspaceFolders[0]);
            if (!path.isAbsolute(p)) {
                p = path.join(o.workspaceFolders[0], p);
            }
        }
        if (!o.trusted && inside(path.resolve(p), o.workspaceFolders)) {
            tried.push(`${p} (not run: the workspace is not trusted)`);
            return { tried };
        }
        tried.push(p);
        return { path: o.isExecutable(p) ? p : undefined, tried };
    }
    for (const dir of (o.pathEnv ?? '').split(path.delimiter)) {
        if (!dir) {
            continue;
        }
        const p = path.join(dir, 'wick');
        if (o.isExecutable(p)) {
            return { path: p, tried: [...tried, p] };
        }
    }
    tried.push('wick on PATH');
    if (!o.trusted) {
        tried.push('no workspace build (the workspace is not trusted)');
        return { tried };
    }
    for (const folder of o.workspaceFolders) {
        const p = path.join(folder, 'target', 'release', 'wick');
        tried.push(p);
        if (o.isExecutable(p)) {
            return { path: p, tried };
        }
    }
    return { tried };
}

/** The names of the server's settings, from the extension's package.json. */
export function serverKeys(packageJson: { contributes: { configuration: { properties: Record<string, unknown> } } }): string[] {
    return Object.keys(packageJson.contributes.configuration.properties)
        .filter((k) => k.startsWith('wick.'))
        .map((k) => k.slice('wick.'.length))
        .filter((k) => !CLIENT_ONLY.includes(k));
}

/**
 * The settings object the server gets (initializationOptions and
 * didChangeConfiguration): every server key with its current value, so a
 * setting removed by the user goes back to its default on the server too.
 */
export function serverSettings(keys: string[], get: (key: string) => unknown): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const k of keys) {
        const v = get(k);
        if (v !== undefined) {
            out[k] = v;
        }
    }
    return out;
}

/**
 * Restart delays after crashes: 1 s, 2 s, 4 s ... up to `maxMs`; a server
 * that ran for `resetAfterMs` starts the count again; after `maxAttempts`
 * quick crashes in a row it gives up (undefined).
 */
export class Backoff {
    private attempts = 0;
    private startedAt = 0;

    constructor(
        private readonly baseMs = 1000,
        private readonly maxMs = 30000,
        private readonly resetAfterMs = 60000,
        private readonly maxAttempts = 6,
    ) {}

    started(now: number): void {
        this.startedAt = now;
    }

    crashed(now: number): number | undefined {
        if (now - this.startedAt >= this.resetAfterMs) {
            this.attempts = 0;
        }
        this.attempts += 1;
        if (this.attempts > this.maxAttempts) {
            return undefined;
        }
        return Math.min(this.maxMs, this.baseMs * 2 ** (this.attempts - 1));
    }

    reset(): void {
        this.attempts = 0;
    }
}

export type ServerState = 'starting' | 'running' | 'notFound' | 'crashed' | 'gaveUp' | 'failed' | 'stopped';
export type ModelState = 'unknown' | 'loading' | 'ready' | 'error';

export interface StatusInput {
    server: ServerState;
    model: ModelState;
    modelName: string;
    /** Error text from the server, or why the server is not running. */
    message: string;
    enabled: boolean;
    latencyMs?: number;
    /** Seconds until the next restart, when crashed. */
    restartInS?: number;
}

export interface StatusView {
    text: string;
    tooltip: string;
    error: boolean;
}

/** What the status bar item shows. */
export function statusView(s: StatusInput): StatusView {
    const latency = s.latencyMs === undefined ? '' : ` ${Math.round(s.latencyMs)} ms`;
    const lines = [s.modelName ? `model: ${s.modelName}` : '', s.message, s.latencyMs === undefined ? '' : `last completion:${latency}`];
    const tooltip = (text: string) => ['wick: ' + text, ...lines].filter((l) => l).join('\n');
    switch (s.server) {
        case 'notFound':
            return { text: '$(error) wick: server not found', tooltip: tooltip('server binary not found'), error: true };
        case 'failed':
            return { text: '$(error) wick: server failed', tooltip: tooltip('the server did not start'), error: true };
        case 'crashed':
            return { text: `$(warning) wick: restarting in ${s.restartInS ?? 0} s`, tooltip: tooltip('the server stopped unexpectedly'), error: true };
        case 'gaveUp':
            return { text: '$(error) wick: server stopped', tooltip: tooltip('the server keeps crashing; use "wick: Restart Server"'), error: true };
        case 'stopped':
            return { text: '$(debug-stop) wick: stopped', tooltip: tooltip('stopped'), error: false };
        case 'starting':
            return { text: '$(sync~spin) wick: starting', tooltip: tooltip('starting the server'), error: false };
        case 'running':
            break;
    }
    if (s.model === 'error') {
        return { text: '$(error) wick: model error', tooltip: tooltip('the model did not load'), error: true };
    }
    if (s.model === 'loading') {
        return { text: '$(sync~spin) wick: loading model', tooltip: tooltip('loading the model'), error: false };
    }
    if (!s.enabled) {
        return { text: '$(circle-slash) wick: off', tooltip: tooltip('completions are off'), error: false };
    }
    return { text: `$(check) wick${latency}`, tooltip: tooltip(s.model === 'ready' ? 'ready' : 'running'), error: false };
}
