// The wick extension: starts `wick serve` through vscode-languageclient
// (inline completions, completion items and code actions come from the
// client's built-in LSP features), keeps the server's settings in sync,
// restarts a crashed server with a back-off, and shows the model's state and
// the last completion latency in the status bar.

import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as vscode from 'vscode';
import {
    CloseAction,
    CloseHandlerResult,
    DidChangeConfigurationNotification,
    ErrorAction,
    ErrorHandlerResult,
    LanguageClient,
    LanguageClientOptions,
    ServerOptions,
    TransportKind,
} from 'vscode-languageclient/node';
import { Backoff, findServer, ModelState, ServerState, serverKeys, serverSettings, statusView } from './logic';

let controller: Controller | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    controller = new Controller(context);
    await controller.start();
}

export async function deactivate(): Promise<void> {
    await controller?.dispose();
    controller = undefined;
}

interface StatusParams {
    state?: string;
    model?: string;
    message?: string;
}

class Controller {
    private client: LanguageClient | undefined;
    private readonly output: vscode.LogOutputChannel;
    private readonly item: vscode.StatusBarItem;
    private readonly keys: string[];
    private readonly backoff = new Backoff();
    /** The binary last started, for `wick doctor`. */
    private serverPath: string | undefined;
    private server: ServerState = 'stopped';
    private model: ModelState = 'unknown';
    private modelName = '';
    private message = '';
    private latencyMs: number | undefined;
    private restartAt = 0;
    private restartTimer: NodeJS.Timeout | undefined;
    private countdown: NodeJS.Timeout | undefined;
    /** Set while we stop the client ourselves, so the close is not a crash. */
    private stopping = false;
    private disposed = false;

    constructor(private readonly context: vscode.ExtensionContext) {
        this.keys = serverKeys(context.extension.packageJSON);
        this.output = vscode.window.createOutputChannel('wick', { log: true });
        this.item = vscode.window.createStatusBarItem('wick.status', vscode.StatusBarAlignment.Right, 100);
        this.item.name = 'wick';
        this.item.command = 'wick.showMenu';
        this.item.show();
        context.subscriptions.push(
            this.output,
            this.item,
            vscode.commands.registerCommand('wick.restartServer', () => this.restart(true)),
            vscode.commands.registerCommand('wick.toggleCompletions', () => this.toggle()),
            vscode.commands.registerCommand('wick.showOutput', () => this.showOutput()),
            vscode.commands.registerCommand('wick.showMenu', () => this.menu()),
            vscode.workspace.onDidChangeConfiguration((e) => this.configurationChanged(e)),
            // Trust granted: the workspace's own binary may now be found.
            vscode.workspace.onDidGrantWorkspaceTrust(() => this.restart(true)),
        );
        this.render();
    }

    /** The output channel, with what `wick doctor` finds now appended. */
    private showOutput(): void {
        this.output.show();
        if (!this.serverPath) {
            return;
        }
        const args = ['doctor', '--editor', 'vscode'];
        const model = this.config().get<string>('model', '');
        if (model) {
            args.push('--model', model);
        }
        execFile(this.serverPath, args, { timeout: 10_000 }, (err, stdout, stderr) => {
            if (err && !stdout) {
                this.output.warn(`wick doctor failed: ${err.message} ${stderr}`);
                return;
            }
            for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) {
                if (line.startsWith('!!')) {
                    this.output.warn(`doctor: ${line.slice(3)}`);
                } else {
                    this.output.info(`doctor: ${line.slice(3)}`);
                }
            }
        });
    }

    private config(): vscode.WorkspaceConfiguration {
        return vscode.workspace.getConfiguration('wick');
    }

    private enabled(): boolean {
        return this.config().get<boolean>('enable', true);
    }

    private settings(): Record<string, unknown> {
        const cfg = this.config();
        return serverSettings(this.keys, (k) => cfg.get(k));
    }

    async start(): Promise<void> {
        if (this.disposed) {
            return;
        }
        this.model = 'unknown';
        this.modelName = '';
        this.message = '';
        const found = findServer({
            setting: this.config().get<string>('serverPath', ''),
            pathEnv: process.env.PATH,
            workspaceFolders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath),
            home: os.homedir(),
            isExecutable,
            trusted: vscode.workspace.isTrusted,
        });
        if (!found.path) {
            this.server = 'notFound';
            this.message = `looked at: ${found.tried.join(', ')}`;
            this.render();
            this.output.error(`server binary not found; ${this.message}`);
            const open = 'Open Settings';
            vscode.window
                .showErrorMessage(
                    `wick: server binary not found (looked at ${found.tried.join(', ')}). Set "wick.serverPath" or put wick on PATH.`,
                    open,
                )
                .then((choice) => {
                    if (choice === open) {
                        vscode.commands.executeCommand('workbench.action.openSettings', 'wick.serverPath');
                    }
                });
            return;
        }
        this.serverPath = found.path;
        this.output.info(`starting ${found.path} serve`);
        const serverOptions: ServerOptions = { command: found.path, args: ['serve'], transport: TransportKind.stdio };
        const clientOptions: LanguageClientOptions = {
            documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
            initializationOptions: this.settings(),
            outputChannel: this.output,
            // The extension owns restarts (with a back-off) and says what
            // happened in the status bar instead of the client's pop-ups.
            errorHandler: {
                error: (): ErrorHandlerResult => ({ action: ErrorAction.Continue, handled: true }),
                closed: (): CloseHandlerResult => {
                    this.closed();
                    return { action: CloseAction.DoNotRestart, handled: true, message: 'the server stopped; the extension restarts it with a back-off' };
                },
            },
            middleware: {
                provideInlineCompletionItems: async (document, position, context, token, next) => {
                    if (!this.enabled()) {
                        return null;
                    }
                    const t0 = performance.now();
                    const result = await next(document, position, context, token);
                    const items = Array.isArray(result) ? result : result?.items;
                    if (items && items.length > 0) {
                        this.latencyMs = performance.now() - t0;
                        this.render();
                    }
                    return result;
                },
                provideCompletionItem: async (document, position, context, token, next) => {
                    if (!this.enabled()) {
                        return null;
                    }
                    return next(document, position, context, token);
                },
            },
        };
        const client = new LanguageClient('wick', 'wick', serverOptions, clientOptions);
        this.client = client;
        client.onNotification('wick/status', (p: StatusParams) => this.status(p));
        this.server = 'starting';
        this.render();
        this.backoff.started(Date.now());
        try {
            await client.start();
            if (this.client === client && this.server === 'starting') {
                this.server = 'running';
                this.render();
            }
        } catch (e) {
            this.output.error(`the server did not start: ${e}`);
            if (this.client === client && this.server === 'starting') {
                this.server = 'failed';
                this.message = String(e);
                this.render();
            }
        }
    }

    private status(p: StatusParams): void {
        const state = p.state ?? '';
        this.model = state === 'loading' || state === 'ready' || state === 'error' ? state : 'unknown';
        this.modelName = p.model ?? '';
        this.message = p.message ?? '';
        if (state === 'ready') {
            this.server = 'running';
        }
        this.render();
    }

    /** The server's connection closed without us asking: schedule a restart. */
    private closed(): void {
        if (this.stopping || this.disposed || this.restartTimer) {
            return;
        }
        const delay = this.backoff.crashed(Date.now());
        this.model = 'unknown';
        if (delay === undefined) {
            this.server = 'gaveUp';
            this.render();
            this.output.error('the server keeps crashing; not restarting it again');
            const restart = 'Restart';
            vscode.window.showErrorMessage('wick: the server keeps crashing, so it is not restarted again.', restart, 'Show Output').then((c) => {
                if (c === restart) {
                    this.restart(true);
                } else if (c) {
                    this.output.show();
                }
            });
            return;
        }
        this.output.warn(`the server stopped unexpectedly; restarting in ${delay} ms`);
        this.server = 'crashed';
        this.restartAt = Date.now() + delay;
        this.render();
        this.countdown = setInterval(() => this.render(), 1000);
        this.restartTimer = setTimeout(() => this.restart(false), delay);
    }

    private clearTimers(): void {
        clearTimeout(this.restartTimer);
        clearInterval(this.countdown);
        this.restartTimer = undefined;
        this.countdown = undefined;
    }

    async restart(byUser: boolean): Promise<void> {
        this.clearTimers();
        if (byUser) {
            this.backoff.reset();
        }
        await this.stopClient();
        await this.start();
    }

    private async stopClient(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (!client) {
            return;
        }
        this.stopping = true;
        try {
            await client.dispose(3000);
        } catch (e) {
            // A crashed or half-started client cannot stop cleanly; it is gone either way.
            this.output.debug(`stopping the client: ${e}`);
        } finally {
            this.stopping = false;
        }
        this.server = 'stopped';
    }

    private async toggle(): Promise<void> {
        await this.config().update('enable', !this.enabled(), vscode.ConfigurationTarget.Global);
    }

    private async menu(): Promise<void> {
        const items = [
            { label: this.enabled() ? 'Turn completions off' : 'Turn completions on', command: 'wick.toggleCompletions' },
            { label: 'Restart server', command: 'wick.restartServer' },
            { label: 'Show output', command: 'wick.showOutput' },
        ];
        const pick = await vscode.window.showQuickPick(items, { title: statusView(this.view()).tooltip.split('\n')[0] });
        if (pick) {
            await vscode.commands.executeCommand(pick.command);
        }
    }

    private configurationChanged(e: vscode.ConfigurationChangeEvent): void {
        if (e.affectsConfiguration('wick.serverPath')) {
            this.restart(true);
            return;
        }
        if (e.affectsConfiguration('wick.enable')) {
            this.render();
        }
        if (this.client?.isRunning() && this.keys.some((k) => e.affectsConfiguration(`wick.${k}`))) {
            this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { wick: this.settings() } });
        }
    }

    private view() {
        return {
            server: this.server,
            model: this.model,
            modelName: this.modelName,
            message: this.message,
            enabled: this.enabled(),
            latencyMs: this.latencyMs,
            restartInS: Math.max(0, Math.ceil((this.restartAt - Date.now()) / 1000)),
        };
    }

    private render(): void {
        const v = statusView(this.view());
        this.item.text = v.text;
        this.item.tooltip = v.tooltip;
        this.item.backgroundColor = v.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    }

    async dispose(): Promise<void> {
        this.disposed = true;
        this.clearTimers();
        await this.stopClient();
    }
}

function isExecutable(p: string): boolean {
    try {
        fs.accessSync(p, fs.constants.X_OK);
        return fs.statSync(p).isFile();
    } catch {
        return false;
    }
}
