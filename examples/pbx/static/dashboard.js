// The PBX live-calls dashboard: Laravel Echo + pusher-js, as a Laravel front end uses them.
//
// What the seed's useCallPresence() hook does, without React:
//   Echo.join(`org.${id}`)            presence-org.{id}: here / joining / leaving = online team
//     .listen('.call.initiated')      leading dot: the events use broadcastAs(), so no
//     .listen('.call.answered')       "App.Events" namespace is prepended (a class-named
//     .listen('.call.ended')          event would be .listen('CallInitiated'))
//   Echo.private(`user.${id}`), Echo.private(`extension.${ext}`)
//   pusher.connection.bind('state_change')   disconnected / connecting / connected
// Missed events are not replayed by Pusher-protocol servers, so on every (re)connection the
// page reloads the organization's calls from GET /api/v1/calls and merges them.
import Echo from "laravel-echo";

const $ = (selector) => document.querySelector(selector);

async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.status === 401) {
        location.href = "/login";
        throw new Error("not logged in");
    }
    return { status: response.status, body: await response.json() };
}

function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
        if (name === "class") node.className = value;
        else if (name.startsWith("data-")) node.setAttribute(name, value);
        else node[name] = value;
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
}

function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, "0");
    const ss = String(s % 60).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function timeOfDay(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
}

// ------------------------------------------------------------------ who am I, Echo
const me = (await getJSON("/api/v1/me")).body;
$("#org-name").textContent = me.organization.name;
$("#me-name").textContent = `${me.user.name} (${me.user.role})`;
$("#me-ext").textContent = me.user.extension_id;
document.title = `Live calls · ${me.organization.name}`;

// resources/js/echo.js of a Laravel app, with the values Vite would inline from .env.
window.Echo = new Echo({
    broadcaster: "pusher",
    key: me.echo.key,
    cluster: "mt1", // required by pusher-js 8, unused once wsHost is set
    wsHost: me.echo.wsHost,
    wsPort: me.echo.wsPort,
    wssPort: me.echo.wsPort,
    forceTLS: me.echo.forceTLS,
    enabledTransports: ["ws", "wss"],
    bearerToken: me.token, // Authorization header on /broadcasting/auth and /user-auth
});
const pusher = window.Echo.connector.pusher;

// ------------------------------------------------------------------ activity log
function activity(text, kind = "info") {
    const list = $("#activity");
    const stamp = new Date().toLocaleTimeString([], { hour12: false });
    list.prepend(el("li", { "data-kind": kind }, el("time", {}, stamp), " ", text));
    while (list.children.length > 12) list.lastChild.remove();
}

// ------------------------------------------------------------------ connection state
const BUCKET = {
    initialized: "connecting",
    connecting: "connecting",
    connected: "connected",
    unavailable: "disconnected",
    failed: "disconnected",
    disconnected: "disconnected",
};
const LABEL = { connecting: "Connecting…", connected: "Connected", disconnected: "Disconnected" };

function showState(state) {
    const chip = $("#connection");
    const bucket = BUCKET[state] ?? "disconnected";
    chip.dataset.state = state;
    chip.dataset.bucket = bucket;
    chip.querySelector(".label").textContent =
        LABEL[bucket] + (state !== bucket && state !== "initialized" ? ` (${state})` : "");
    if (bucket === "connected") $("#reconnect-note").hidden = true;
}

showState(pusher.connection.state);
pusher.connection.bind("state_change", ({ previous, current }) => {
    showState(current);
    if (previous !== "initialized" || current !== "connecting") {
        activity(`connection ${previous} → ${current}`, current === "connected" ? "ok" : "warn");
    }
    if (current === "connected") resync();
    checkHealth();
});
function note(text) {
    const node = $("#reconnect-note");
    node.textContent = text;
    node.hidden = false;
}
pusher.connection.bind("connecting_in", (seconds) => note(`Connection lost: reconnecting in ${seconds} s…`));
pusher.connection.bind("unavailable", () =>
    // pusher-js's default strategy gives each failed attempt 15 s before the next one.
    note("pbxws is unreachable: pusher-js keeps retrying on its own (every 15 s or so)."),
);
let lastError = "";
pusher.connection.bind("error", (error) => {
    // pusher-js reports one close several times (PusherError, then WebSocketError).
    const data = error?.data ?? error?.error?.data;
    const text = data?.code ? `${data.code} ${data.message ?? ""}`.trim() : "";
    if (text && text !== lastError) activity(`pbxws closed the connection: ${text}`, "warn");
    lastError = text;
});
pusher.connection.bind("connected", () => {
    lastError = "";
});

// pusher-js user sign-in (POST /broadcasting/user-auth); re-done on every reconnection.
window.Echo.connector.signin();
pusher.bind("pusher:signin_success", (data) => {
    const user = JSON.parse(data.user_data);
    const chip = $("#signin");
    chip.dataset.status = "ok";
    chip.textContent = `signed in as user ${user.id}`;
});

// ------------------------------------------------------------------ health
async function checkHealth() {
    const chip = $("#health");
    try {
        const { body } = await getJSON("/api/v1/websocket/health");
        chip.dataset.status = body.status;
        chip.textContent = `pbxws health: ${body.websocket}`;
        chip.title = JSON.stringify(body, null, 1);
    } catch (err) {
        chip.dataset.status = "error";
        chip.textContent = "pbxws health: backend unreachable";
    }
}
setInterval(checkHealth, 15000);

// ------------------------------------------------------------------ calls
const active = new Map(); // call_id -> call (initiated or answered)
const ended = new Map(); // call_id -> ended call, newest first, at most MAX_ENDED
const MAX_ENDED = 8;
const STATUS_LABEL = { initiated: "Ringing", answered: "Answered" };

function extensionLabel(extensionId) {
    if (!extensionId) return "—";
    const name = me.extensions[extensionId];
    return name ? `${extensionId} · ${name}` : extensionId;
}

function durationOf(call, now = Date.now()) {
    const since = call.status === "answered" ? call.answered_at : call.initiated_at;
    return since ? (now - Date.parse(since)) / 1000 : 0;
}

function callRow(call) {
    return el(
        "tr",
        { "data-call-id": call.call_id, "data-status": call.status },
        el("td", { class: "from" }, call.from_number ?? "…"),
        el("td", { class: "to" }, call.to_number ?? "…"),
        el("td", {}, el("span", { class: `badge ${call.status}` }, STATUS_LABEL[call.status] ?? call.status)),
        el("td", { class: "ext" }, extensionLabel(call.extension_id)),
        el("td", { class: "num duration" }, clock(durationOf(call))),
    );
}

function endedItem(call) {
    return el(
        "li",
        { "data-call-id": call.call_id, "data-status": call.status },
        el("span", { class: "from" }, call.from_number ?? call.call_id),
        el("span", { class: `badge ${call.status}` }, call.status),
        el("span", { class: "muted" }, ` ${clock(call.duration ?? 0)} talk · ended ${timeOfDay(call.ended_at)}`),
    );
}

function renderCalls() {
    const body = $("#active-calls");
    const rows = [...active.values()].sort((a, b) => (a.initiated_at ?? "").localeCompare(b.initiated_at ?? ""));
    // A row keeps its node until the call changes (tick() updates durations in place).
    const existing = new Map([...body.children].map((tr) => [tr.dataset.callId, tr]));
    body.replaceChildren(
        ...rows.map((call) => {
            const signature = [call.status, call.from_number, call.to_number, call.extension_id].join("|");
            const tr = existing.get(call.call_id);
            if (tr && tr.dataset.signature === signature) return tr;
            const fresh = callRow(call);
            fresh.dataset.signature = signature;
            return fresh;
        }),
    );
    $("#active-count").textContent = String(active.size);
    $("#no-calls").hidden = active.size > 0;
    $("#ended-calls").replaceChildren(...[...ended.values()].map(endedItem));
}

function tick() {
    const now = Date.now();
    for (const tr of $("#active-calls").children) {
        const call = active.get(tr.dataset.callId);
        if (call) tr.querySelector(".duration").textContent = clock(durationOf(call, now));
    }
}
setInterval(tick, 1000);

function stamp(call) {
    call._seen = performance.now();
    return call;
}

function onInitiated(e) {
    if (ended.has(e.call_id)) return; // a late duplicate
    active.set(e.call_id, stamp({ ...active.get(e.call_id), ...e, status: active.get(e.call_id)?.status ?? e.status }));
    renderCalls();
    activity(`incoming call from ${e.from_number}`);
}

function onAnswered(e) {
    if (ended.has(e.call_id)) return;
    active.set(e.call_id, stamp({ ...active.get(e.call_id), ...e }));
    renderCalls();
    activity(`${active.get(e.call_id).from_number ?? e.call_id} answered by ext ${extensionLabel(e.extension_id)}`);
}

function onEnded(e) {
    const call = { ...active.get(e.call_id), ...e };
    active.delete(e.call_id);
    ended.delete(e.call_id);
    ended.set(e.call_id, call);
    trimEnded();
    renderCalls();
    activity(`${call.from_number ?? e.call_id} ${e.status} after ${clock(e.duration ?? 0)}`);
}

function trimEnded() {
    const newestFirst = [...ended.values()].sort((a, b) => (b.ended_at ?? "").localeCompare(a.ended_at ?? ""));
    ended.clear();
    for (const call of newestFirst.slice(0, MAX_ENDED)) ended.set(call.call_id, call);
}

// After a (re)connection: events published while we were away are gone, so ask the app.
async function resync() {
    const asked = performance.now();
    let body;
    try {
        ({ body } = await getJSON("/api/v1/calls"));
    } catch {
        return;
    }
    for (const call of body.recent) {
        active.delete(call.call_id);
        if (!ended.has(call.call_id)) ended.set(call.call_id, call);
    }
    const live = new Set(body.active.map((c) => c.call_id));
    for (const [id, call] of active) {
        // Ended while we were away (an event received after we asked is newer than the answer).
        if (!live.has(id) && call._seen < asked) active.delete(id);
    }
    for (const call of body.active) {
        if (ended.has(call.call_id)) continue;
        const local = active.get(call.call_id);
        // Keep the local copy if it is further along (answered beats initiated).
        if (local && local.status === "answered" && call.status === "initiated") continue;
        active.set(call.call_id, { ...local, ...call, _seen: local?._seen ?? asked });
    }
    trimEnded();
    renderCalls();
}

// ------------------------------------------------------------------ team
const members = new Map(); // user id -> user_info

function renderMembers() {
    const sorted = [...members.values()].sort((a, b) => a.name.localeCompare(b.name));
    $("#members").replaceChildren(
        ...sorted.map((m) =>
            el(
                "li",
                { "data-user-id": String(m.id) },
                el("span", { class: "avatar" }, m.name.split(" ").map((w) => w[0]).join("").slice(0, 2)),
                el(
                    "span",
                    { class: "who" },
                    el("strong", {}, m.name + (String(m.id) === String(me.user.id) ? " (you)" : "")),
                    el("span", { class: "muted small" }, ` ${m.role} · ${m.email}`),
                ),
            ),
        ),
    );
    $("#member-count").textContent = String(members.size);
}

// ------------------------------------------------------------------ channels
function channelChip(name) {
    let chip = document.querySelector(`#channels li[data-channel="${name}"]`);
    if (!chip) {
        chip = el("li", { "data-channel": name, "data-status": "pending" }, name);
        $("#channels").append(chip);
    }
    return chip;
}

function track(channel, name) {
    channelChip(name);
    return channel
        .subscribed(() => {
            channelChip(name).dataset.status = "subscribed";
        })
        .error((error) => {
            channelChip(name).dataset.status = "error";
            activity(`${name}: subscription refused (${error?.status ?? error?.type ?? "error"})`, "warn");
        });
}

track(window.Echo.join(`org.${me.organization.id}`), `presence-org.${me.organization.id}`)
    .here((users) => {
        members.clear();
        for (const user of users) members.set(String(user.id), user);
        renderMembers();
    })
    .joining((user) => {
        members.set(String(user.id), user);
        renderMembers();
        activity(`${user.name} came online`, "ok");
    })
    .leaving((user) => {
        members.delete(String(user.id));
        renderMembers();
        activity(`${user.name} went offline`);
    })
    .listen(".call.initiated", onInitiated)
    .listen(".call.answered", onAnswered)
    .listen(".call.ended", onEnded);

track(window.Echo.private(`user.${me.user.id}`), `private-user.${me.user.id}`).notification((n) =>
    activity(`notification: ${n.type ?? "message"}`),
);

track(window.Echo.private(`extension.${me.user.extension_id}`), `private-extension.${me.user.extension_id}`).listen(
    ".call.answered",
    (e) => activity(`your extension ${me.user.extension_id} answered ${active.get(e.call_id)?.from_number ?? e.call_id}`, "ok"),
);

renderCalls();
renderMembers();
checkHealth();

// For people poking around in devtools, and for tests.
window.pbxDashboard = { me, pusher, active, ended, members, resync };
