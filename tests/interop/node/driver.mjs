// Interop driver: runs the official Pusher clients under Node for pytest.
//
// Protocol (JSON lines):
//   stdin   one command per line: {"id": 1, "cmd": "connect", ...}
//   stdout  one message per line:
//             {"id": 1, "ok": true, "result": {...}}          reply to command 1
//             {"id": 1, "ok": false, "error": "..."}          command 1 failed in the driver
//             {"type": "...", "client": "a", ...}            something a client observed
//   stderr  free-form diagnostics (pusher-js log, stack traces); pytest shows its tail on failure.
//
// On start the driver serves a channel-authorization / user-authentication endpoint on 127.0.0.1
// (the Node `pusher` SDK signs the answers, as a Laravel/Express backend would) and prints
// {"type": "ready", "auth_port": N}. Each client gets its own endpoint path, so a test can give one
// client a wrong secret, another user id, a forced HTTP status, and so on.
//
// Everything a client sees is reported, whether or not a test asked for it:
//   state          {client, previous, current, socket_id?}      pusher-js connection state changes
//   error          {client, error}                              connection 'error' events (close codes live here)
//   closed         {client, code, reason, was_clean}            the WebSocket of a connected client closed
//   frame          {client, event, channel?, data?, user_id?}   every decoded message received after the handshake
//   event          {client, channel, event, data}               every event a subscribed channel emitted (bind_global)
//   bound          {client, channel, event, data, user_id?}     an event delivered to an explicit `bind`
//   subscription_succeeded / subscription_error / subscription_count / member_added / member_removed
//                  {client, channel, data}                      channel lifecycle, presence members flattened
//   user_event     {client, event, data}                        pusher.user.bind_global (server-to-user)
//   watchlist      {client, name, user_ids}                     pusher.user.watchlist online/offline
//   signin_error   {client, data}
//   auth_request   {client, kind, channel?, socket_id, status}  the auth endpoint was called
//   echo_event / echo_whisper / echo_notification / here / joining / leaving / echo_error / echo_subscribed
//                  {client, channel, ...}                       Laravel Echo callbacks

import http from "node:http";
import readline from "node:readline";
import { format } from "node:util";

import Echo from "laravel-echo";
import PusherSDK from "pusher";
import Pusher from "pusher-js";

// ------------------------------------------------------------------ output
// stdout carries only protocol lines; anything a library prints goes to stderr.
const writeOut = process.stdout.write.bind(process.stdout);
for (const level of ["log", "info", "debug", "warn", "error"]) {
    console[level] = (...args) => process.stderr.write(`[console.${level}] ${format(...args)}\n`);
}
Pusher.log = (msg) => process.stderr.write(`[pusher-js] ${msg}\n`);

function plain(value, depth = 0) {
    // JSON-safe copy of whatever a library hands us (Errors, faye events, class instances).
    if (value === undefined || value === null) return value ?? null;
    if (depth > 6) return String(value);
    if (value instanceof Error) return { name: value.name, message: value.message };
    if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
    if (typeof value === "object") {
        const out = {};
        for (const [k, v] of Object.entries(value)) {
            if (typeof v === "function" || k === "target" || k === "currentTarget") continue;
            out[k] = plain(v, depth + 1);
        }
        return out;
    }
    if (typeof value === "bigint") return value.toString();
    return value;
}

function emit(message) {
    let line;
    try {
        line = JSON.stringify(message);
    } catch (err) {
        line = JSON.stringify({ type: "driver_error", error: `unserialisable message: ${err}` });
    }
    writeOut(line + "\n");
}

function report(client, type, fields) {
    emit({ type, client, ...plain(fields) });
}

// ------------------------------------------------------------------ state
const clients = new Map(); // name -> {kind: "pusher" | "echo", pusher, echo?, profile, channels: Map}
const profiles = new Map(); // client name -> auth profile used by the auth endpoint

function getClient(name) {
    const c = clients.get(name);
    if (!c) throw new Error(`unknown client ${JSON.stringify(name)}`);
    return c;
}

function sdkFor(app, host, port) {
    if (!app || !app.id || !app.key || !app.secret) throw new Error("app {id, key, secret} is required");
    return new PusherSDK({
        appId: String(app.id),
        key: app.key,
        secret: app.secret,
        host: host ?? "127.0.0.1",
        port: port === undefined ? undefined : String(port),
        useTLS: false,
        encryptionMasterKeyBase64: app.master_key ?? undefined,
        timeout: 10000,
    });
}

// ------------------------------------------------------------------ auth endpoint
// POST /auth/<client>       socket_id, channel_name  -> authorizeChannel (private, presence, encrypted)
// POST /user-auth/<client>  socket_id                -> authenticateUser (signin)
//
// Profile fields (all optional except app):
//   app        {id, key, secret, master_key?}   credentials the endpoint signs with
//   secret     overrides app.secret: a wrong secret makes the server reject the signature
//   user_id    presence user id / signin id
//   user_info  presence user_info; omitted from channel_data when absent (Laravel does that)
//   user_data  full signin user_data (default {id: user_id, user_info?})
//   status     answer with this HTTP status and no signature (the endpoint refuses)
function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

function answer(res, status, body) {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
}

async function handleAuth(req, res) {
    const match = /^\/(auth|user-auth)\/([^/?]+)/.exec(req.url ?? "");
    if (req.method !== "POST" || !match) return answer(res, 404, { error: "not found" });
    const kind = match[1] === "auth" ? "channel" : "user";
    const client = decodeURIComponent(match[2]);
    const params = new URLSearchParams(await readBody(req));
    const socketId = params.get("socket_id");
    const channel = params.get("channel_name") ?? undefined;
    const profile = profiles.get(client);
    let status = 200;
    let body;
    try {
        if (!profile) {
            status = 404;
            body = { error: `no auth profile for client ${client}` };
        } else if (profile.status) {
            status = profile.status;
            body = { error: "refused by test profile" };
        } else {
            const sdk = sdkFor({ ...profile.app, secret: profile.secret ?? profile.app.secret });
            if (kind === "channel") {
                let presenceData;
                if (channel.startsWith("presence-")) {
                    if (profile.user_id === undefined) {
                        status = 403;
                        body = { error: "profile has no user_id for a presence channel" };
                    } else {
                        presenceData = { user_id: String(profile.user_id) };
                        if (profile.user_info !== undefined) presenceData.user_info = profile.user_info;
                    }
                }
                if (status === 200) body = sdk.authorizeChannel(socketId, channel, presenceData);
            } else {
                const userData = profile.user_data ?? {
                    id: String(profile.user_id),
                    ...(profile.user_info !== undefined ? { user_info: profile.user_info } : {}),
                    ...(profile.watchlist !== undefined ? { watchlist: profile.watchlist } : {}),
                };
                body = sdk.authenticateUser(socketId, userData);
            }
        }
    } catch (err) {
        status = 500;
        body = { error: String(err?.message ?? err) };
    }
    report(client, "auth_request", { kind, channel, socket_id: socketId, status });
    answer(res, status, body);
}

const authServer = http.createServer((req, res) => {
    handleAuth(req, res).catch((err) => {
        process.stderr.write(`auth endpoint crashed: ${err?.stack ?? err}\n`);
        answer(res, 500, { error: String(err) });
    });
});

// ------------------------------------------------------------------ pusher-js clients
function pusherOptions(name, cmd) {
    const authPort = authServer.address().port;
    return {
        cluster: "mt1", // required by pusher-js 8, unused once wsHost is set
        wsHost: cmd.host ?? "127.0.0.1",
        wsPort: cmd.port,
        forceTLS: false,
        enabledTransports: ["ws"],
        channelAuthorization: { endpoint: `http://127.0.0.1:${authPort}/auth/${encodeURIComponent(name)}`, transport: "ajax" },
        userAuthentication: { endpoint: `http://127.0.0.1:${authPort}/user-auth/${encodeURIComponent(name)}`, transport: "ajax" },
        ...(cmd.options ?? {}),
    };
}

function observeConnection(name, pusher) {
    const conn = pusher.connection;
    conn.bind("state_change", ({ previous, current }) => {
        report(name, "state", { previous, current, socket_id: current === "connected" ? conn.socket_id : undefined });
        if (current === "connected" && conn.connection && conn.connection.transport) {
            const transport = conn.connection.transport;
            transport.bind("closed", (ev) => {
                report(name, "closed", { code: ev?.code ?? null, reason: ev?.reason ?? null, was_clean: ev?.wasClean ?? null });
            });
        }
    });
    conn.bind("error", (err) => report(name, "error", { error: err }));
    conn.bind("message", (ev) => {
        report(name, "frame", { event: ev.event, channel: ev.channel, data: ev.data, user_id: ev.user_id });
    });
    pusher.user.bind_global((event, data) => report(name, "user_event", { event, data }));
    pusher.user.bind("pusher:signin_error", (data) => report(name, "signin_error", { data }));
    for (const status of ["online", "offline"]) {
        pusher.user.watchlist.bind(status, (ev) => report(name, "watchlist", { name: ev.name, user_ids: ev.user_ids }));
    }
}

function membersSnapshot(members) {
    if (!members || typeof members !== "object" || !("members" in members)) return members;
    return { count: members.count, me: members.me, members: members.members, ids: Object.keys(members.members ?? {}) };
}

function observeChannel(name, channel) {
    channel.bind_global((event, data) => {
        switch (event) {
            case "pusher:subscription_succeeded":
                return report(name, "subscription_succeeded", { channel: channel.name, data: membersSnapshot(data) });
            case "pusher:subscription_error":
                return report(name, "subscription_error", { channel: channel.name, data });
            case "pusher:subscription_count":
                return report(name, "subscription_count", { channel: channel.name, data });
            case "pusher:member_added":
                return report(name, "member_added", { channel: channel.name, data });
            case "pusher:member_removed":
                return report(name, "member_removed", { channel: channel.name, data });
            default:
                return report(name, "event", { channel: channel.name, event, data });
        }
    });
}

function waitForState(pusher, states) {
    if (states.includes(pusher.connection.state)) return Promise.resolve();
    return new Promise((resolve) => {
        const check = ({ current }) => {
            if (states.includes(current)) {
                pusher.connection.unbind("state_change", check);
                resolve();
            }
        };
        pusher.connection.bind("state_change", check);
    });
}

function clientState(c) {
    const p = c.pusher;
    return {
        state: p.connection.state,
        socket_id: p.connection.socket_id ?? null,
        channels: p.allChannels().map((ch) => ({ name: ch.name, subscribed: ch.subscribed })),
        user_data: p.user.user_data,
    };
}

// ------------------------------------------------------------------ Laravel Echo clients
function echoChannel(c, kind, name) {
    const echo = c.echo;
    switch (kind) {
        case "channel":
            return echo.channel(name);
        case "private":
            return echo.private(name);
        case "encryptedPrivate":
            return echo.encryptedPrivate(name);
        case "join":
            return echo.join(name);
        default:
            throw new Error(`unknown Echo channel kind ${kind}`);
    }
}

function echoFullName(kind, name) {
    return { channel: "", private: "private-", encryptedPrivate: "private-encrypted-", join: "presence-" }[kind] + name;
}

// ------------------------------------------------------------------ commands
const commands = {
    ping: async () => ({ pong: true, auth_port: authServer.address().port }),

    // pusher-js ---------------------------------------------------------
    async connect(cmd) {
        const name = cmd.client;
        if (clients.has(name)) throw new Error(`client ${name} already exists`);
        profiles.set(name, cmd.auth ?? null);
        const pusher = new Pusher(cmd.key, pusherOptions(name, cmd));
        const c = { kind: "pusher", pusher, channels: new Map() };
        clients.set(name, c);
        observeConnection(name, pusher);
        if (cmd.await) await waitForState(pusher, cmd.await);
        return clientState(c);
    },

    async subscribe(cmd) {
        const c = getClient(cmd.client);
        const channel = c.pusher.subscribe(cmd.channel);
        if (!c.channels.has(cmd.channel)) {
            c.channels.set(cmd.channel, channel);
            observeChannel(cmd.client, channel);
        }
        return { channel: channel.name };
    },

    async unsubscribe(cmd) {
        const c = getClient(cmd.client);
        c.pusher.unsubscribe(cmd.channel);
        c.channels.delete(cmd.channel);
        return {};
    },

    async bind(cmd) {
        const c = getClient(cmd.client);
        const channel = c.pusher.channel(cmd.channel);
        if (!channel) throw new Error(`client ${cmd.client} has no channel ${cmd.channel}`);
        channel.bind(cmd.event, (data, metadata) => {
            report(cmd.client, "bound", { channel: cmd.channel, event: cmd.event, data, user_id: metadata?.user_id });
        });
        return {};
    },

    async trigger(cmd) {
        // A client event, sent through the channel object as an application would.
        const c = getClient(cmd.client);
        const channel = c.pusher.channel(cmd.channel);
        if (!channel) throw new Error(`client ${cmd.client} has no channel ${cmd.channel}`);
        return { sent: channel.trigger(cmd.event, cmd.data) };
    },

    async signin(cmd) {
        getClient(cmd.client).pusher.signin();
        return {};
    },

    async sync(cmd) {
        // Round trip a pusher:ping. The server answers in order on this socket, so when the pong
        // arrives every frame the server sent this client before reading the ping has been reported.
        const c = getClient(cmd.client);
        const conn = c.pusher.connection;
        if (conn.state !== "connected") throw new Error(`client ${cmd.client} is ${conn.state}, not connected`);
        await new Promise((resolve) => {
            const onMessage = (ev) => {
                if (ev.event === "pusher:pong") {
                    conn.unbind("message", onMessage);
                    resolve();
                }
            };
            conn.bind("message", onMessage);
            conn.send_event("pusher:ping", {});
        });
        return {};
    },

    async wait_state(cmd) {
        const c = getClient(cmd.client);
        await waitForState(c.pusher, cmd.states);
        return clientState(c);
    },

    async state(cmd) {
        return clientState(getClient(cmd.client));
    },

    async members(cmd) {
        const channel = getClient(cmd.client).pusher.channel(cmd.channel);
        if (!channel || !channel.members) throw new Error(`client ${cmd.client} has no presence channel ${cmd.channel}`);
        return membersSnapshot(channel.members);
    },

    async disconnect(cmd) {
        const c = getClient(cmd.client);
        c.pusher.disconnect();
        if (cmd.forget) clients.delete(cmd.client);
        return {};
    },

    // Laravel Echo ------------------------------------------------------
    async echo_connect(cmd) {
        const name = cmd.client;
        if (clients.has(name)) throw new Error(`client ${name} already exists`);
        profiles.set(name, cmd.auth ?? null);
        // Configured the way a Laravel app's resources/js/echo.js is: Echo's own option names
        // for the endpoints (`authEndpoint`), which Echo hands on to pusher-js.
        const { channelAuthorization, userAuthentication, ...opts } = pusherOptions(name, cmd);
        const echo = new Echo({
            broadcaster: "pusher",
            key: cmd.key,
            Pusher,
            ...opts,
            authEndpoint: channelAuthorization.endpoint,
            userAuthentication: { endpoint: userAuthentication.endpoint, headers: {} },
        });
        const pusher = echo.connector.pusher;
        const c = { kind: "echo", echo, pusher, channels: new Map() };
        clients.set(name, c);
        observeConnection(name, pusher);
        if (cmd.await) await waitForState(pusher, cmd.await);
        return { ...clientState(c), echo_socket_id: echo.socketId() ?? null };
    },

    async echo_channel(cmd) {
        // kind: channel | private | encryptedPrivate | join; name without Echo's prefix.
        const c = getClient(cmd.client);
        const name = cmd.client;
        const full = echoFullName(cmd.kind, cmd.name);
        const channel = echoChannel(c, cmd.kind, cmd.name);
        if (!c.channels.has(full)) {
            c.channels.set(full, channel);
            channel.subscribed(() => report(name, "echo_subscribed", { channel: full }));
            channel.error((err) => report(name, "echo_error", { channel: full, data: err }));
            if (cmd.kind === "join") {
                channel
                    .here((members) => report(name, "here", { channel: full, members }))
                    .joining((member) => report(name, "joining", { channel: full, member }))
                    .leaving((member) => report(name, "leaving", { channel: full, member }));
            }
        }
        for (const event of cmd.listen ?? []) {
            channel.listen(event, (data) => report(name, "echo_event", { channel: full, event, data }));
        }
        if (cmd.notification) {
            channel.notification((data) => report(name, "echo_notification", { channel: full, data }));
        }
        for (const whisper of cmd.listen_for_whisper ?? []) {
            channel.listenForWhisper(whisper, (data) => report(name, "echo_whisper", { channel: full, event: whisper, data }));
        }
        return { channel: full };
    },

    async echo_whisper(cmd) {
        const c = getClient(cmd.client);
        echoChannel(c, cmd.kind, cmd.name).whisper(cmd.event, cmd.data);
        return {};
    },

    async echo_leave(cmd) {
        getClient(cmd.client).echo.leave(cmd.name);
        return {};
    },

    async echo_disconnect(cmd) {
        getClient(cmd.client).echo.disconnect();
        return {};
    },

    // Node server SDK ---------------------------------------------------
    // {app: {id, key, secret, master_key?}, host?, port, op, args: [...]}
    // HTTP operations answer {status, body}; a non-2xx answer is an observation, not a driver error.
    async sdk(cmd) {
        const sdk = sdkFor(cmd.app, cmd.host, cmd.port);
        const args = cmd.args ?? [];
        const ops = {
            trigger: () => sdk.trigger(...args),
            triggerBatch: () => sdk.triggerBatch(...args),
            get: () => sdk.get(...args),
            post: () => sdk.post(...args),
            sendToUser: () => sdk.sendToUser(...args),
            terminateUserConnections: () => sdk.terminateUserConnections(...args),
        };
        const signing = {
            authorizeChannel: () => sdk.authorizeChannel(...args),
            authenticateUser: () => sdk.authenticateUser(...args),
        };
        if (cmd.op in signing) return { value: signing[cmd.op]() };
        if (!(cmd.op in ops)) throw new Error(`unknown sdk op ${cmd.op}`);
        let res;
        try {
            res = await ops[cmd.op]();
        } catch (err) {
            if (err && err.status !== undefined) return { status: err.status, body: parseMaybe(err.body) };
            throw err;
        }
        return { status: res.status, body: parseMaybe(await res.text()) };
    },

    async shutdown() {
        for (const c of clients.values()) {
            try {
                c.pusher.disconnect();
            } catch {
                // already gone
            }
        }
        clients.clear();
        setImmediate(() => {
            authServer.close();
            process.exit(0);
        });
        return {};
    },
};

function parseMaybe(text) {
    if (typeof text !== "string") return text ?? null;
    try {
        return JSON.parse(text);
    } catch {
        return text;
    }
}

async function run(cmd) {
    const handler = Object.hasOwn(commands, cmd.cmd) ? commands[cmd.cmd] : undefined;
    if (!handler) throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
    return handler(cmd);
}

// ------------------------------------------------------------------ main loop
authServer.listen(0, "127.0.0.1", () => {
    emit({ type: "ready", auth_port: authServer.address().port });
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    rl.on("line", (line) => {
        if (!line.trim()) return;
        let cmd;
        try {
            cmd = JSON.parse(line);
        } catch (err) {
            emit({ type: "driver_error", error: `bad command line: ${err}` });
            return;
        }
        run(cmd).then(
            (result) => emit({ id: cmd.id, ok: true, result: plain(result) }),
            (err) => {
                process.stderr.write(`command ${cmd.cmd} failed: ${err?.stack ?? err}\n`);
                emit({ id: cmd.id, ok: false, error: String(err?.message ?? err) });
            },
        );
    });
    rl.on("close", () => commands.shutdown());
});

process.on("uncaughtException", (err) => {
    process.stderr.write(`uncaught: ${err?.stack ?? err}\n`);
    emit({ type: "driver_error", error: String(err?.message ?? err) });
});
process.on("unhandledRejection", (err) => {
    process.stderr.write(`unhandled rejection: ${err?.stack ?? err}\n`);
    emit({ type: "driver_error", error: String(err?.message ?? err) });
});
