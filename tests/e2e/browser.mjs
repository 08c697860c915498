// Browser driver for tests/e2e: Debian's chromium under playwright-core, commanded by pytest.
//
// playwright-core never downloads a browser: it starts the executable it is given
// (PBXWS_CHROMIUM, default /usr/bin/chromium) with the flags this machine needs
// (no GPU, no QUIC, no background networking: only loopback is reachable here).
//
// Protocol (JSON lines):
//   stdin   {"id": 1, "cmd": "open", ...}        one command per line
//   stdout  {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}
//           {"type": "console"|"pageerror"|"requestfailed"|"closed", "page": "alice", ...}
//           {"type": "ready", "browser": "<version>"} once chromium is up
//   stderr  diagnostics
//
// Commands:
//   open        {page, url, init?}     new browser context (own cookies) + page; `init` is a
//                                      script run in every document before the page's own
//   evaluate    {page, expr}           page.evaluate(expr) -> JSON result
//   wait        {page, expr, timeout}  page.waitForFunction(expr) (polled every frame) -> value
//   screenshot  {page, path}           PNG of the viewport
//   close       {page}                 closes the page's context (its WebSocket goes away)
//   shutdown    {}                     closes the browser and exits
import readline from "node:readline";
import { format } from "node:util";

import { chromium } from "playwright-core";

const writeOut = process.stdout.write.bind(process.stdout);
for (const level of ["log", "info", "debug", "warn", "error"]) {
    console[level] = (...args) => process.stderr.write(`[console.${level}] ${format(...args)}\n`);
}

function emit(message) {
    writeOut(JSON.stringify(message) + "\n");
}

const FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

const executablePath = process.env.PBXWS_CHROMIUM || "/usr/bin/chromium";
// launch() gives chromium a new, empty --user-data-dir of its own and --headless.
const browser = await chromium.launch({ executablePath, headless: true, args: FLAGS });
const pages = new Map(); // name -> {context, page}

function pageOf(name) {
    const entry = pages.get(name);
    if (!entry) throw new Error(`no page named ${name}`);
    return entry.page;
}

const commands = {
    async open({ page: name, url, init, viewport }) {
        if (pages.has(name)) throw new Error(`page ${name} is already open`);
        const context = await browser.newContext({ viewport: viewport ?? { width: 1280, height: 760 } });
        const page = await context.newPage();
        pages.set(name, { context, page });
        page.on("console", (msg) => emit({ type: "console", page: name, level: msg.type(), text: msg.text() }));
        page.on("pageerror", (err) => emit({ type: "pageerror", page: name, error: String(err?.stack ?? err) }));
        page.on("requestfailed", (req) =>
            emit({ type: "requestfailed", page: name, url: req.url(), error: req.failure()?.errorText }),
        );
        if (init) await page.addInitScript({ content: init });
        await page.goto(url, { waitUntil: "load" });
        return { url: page.url() };
    },
    async evaluate({ page, expr }) {
        return await pageOf(page).evaluate(expr);
    },
    async wait({ page, expr, timeout }) {
        const handle = await pageOf(page).waitForFunction(expr, null, { timeout: timeout ?? 5000, polling: "raf" });
        return await handle.jsonValue();
    },
    async screenshot({ page, path }) {
        await pageOf(page).screenshot({ path, type: "png" });
        return { path };
    },
    async close({ page: name }) {
        const entry = pages.get(name);
        if (!entry) return null;
        pages.delete(name);
        await entry.context.close();
        emit({ type: "closed", page: name });
        return null;
    },
    async shutdown() {
        await browser.close();
        setImmediate(() => process.exit(0));
        return null;
    },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
    let msg;
    try {
        msg = JSON.parse(line);
    } catch {
        emit({ type: "driver_error", error: `bad command line: ${line}` });
        return;
    }
    const handler = commands[msg.cmd];
    if (!handler) {
        emit({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
        return;
    }
    try {
        emit({ id: msg.id, ok: true, result: (await handler(msg)) ?? null });
    } catch (err) {
        emit({ id: msg.id, ok: false, error: String(err?.message ?? err) });
    }
});
rl.on("close", async () => {
    await browser.close().catch(() => {});
    process.exit(0);
});

emit({ type: "ready", browser: browser.version() });
