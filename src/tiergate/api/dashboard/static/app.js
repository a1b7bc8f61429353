// tiergate dashboard: vanilla JS over the JSON API. No build step, no dependencies, charts as inline SVG.
// Data is only ever inserted as text (textContent / attributes), never as HTML.
"use strict";

(() => {
  const KEY = "tiergate.apiKey";
  const params = new URLSearchParams(location.search);
  const POLL_MS = Math.max(1, Number(params.get("poll")) || 5) * 1000;
  const FORECAST_MS = 30000; // the forecast reads 30 days of history: refreshed less often than the rest
  const SVGNS = "http://www.w3.org/2000/svg";
  const STATES = ["sent", "delivered", "read", "sending", "queued", "held", "failed", "expired", "rejected",
    "canceled", "unknown"];
  const STATE_COLORS = {
    sent: "#0b7a5a", delivered: "#14956d", read: "#3fd3a0", sending: "#1f5fbf", queued: "#9aa9b6",
    held: "#8d6cc0", failed: "#c2312f", expired: "#c77700", rejected: "#c77700", canceled: "#5f6b76",
    unknown: "#5f6b76",
  };
  const HISTORY_KINDS = new Set(["paused", "resumed", "quality", "quality_unknown", "status", "tier_raised",
    "tier_lowered", "tier_unknown"]);

  const state = { key: sessionStorage.getItem(KEY), timer: null, gen: 0, forecast: null, now: null };

  // -- DOM helpers -----------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  // -- formatting ------------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US");
  const num = (n) => (n == null ? "–" : nf.format(n));
  const limitText = (n) => (n == null ? "unlimited" : nf.format(n));

  function short(n) {
    if (n == null) return "∞";
    if (n >= 1e6 && n % 1e4 === 0) return `${n / 1e6}M`;
    if (n >= 1e3 && n % 100 === 0) return `${n / 1e3}K`;
    return nf.format(n);
  }

  const pad = (n) => String(n).padStart(2, "0");
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const date = (ts) => new Date(ts * 1000);
  const clock = (ts) => { const d = date(ts); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; };
  const day = (ts) => { const d = date(ts); return `${d.getDate()} ${MONTHS[d.getMonth()]}`; };
  const when = (ts) => {
    if (ts == null) return "–";
    const d = date(ts);
    return `${WEEKDAYS[d.getDay()]} ${day(ts)} ${clock(ts)}`;
  };

  function duration(sec) {
    sec = Math.abs(sec);
    if (sec < 60) return `${Math.round(sec)} s`;
    const m = Math.round(sec / 60);
    if (m < 60) return `${m} min`;
    const hours = Math.floor(m / 60), mm = m % 60;
    if (hours < 48) return mm ? `${hours} h ${mm} min` : `${hours} h`;
    const days = Math.floor(hours / 24), hh = hours % 24;
    return hh ? `${days} d ${hh} h` : `${days} d`;
  }

  function rel(ts) {
    if (ts == null || state.now == null) return "";
    const d = ts - state.now;
    return d >= 0 ? `in ${duration(d)}` : `${duration(d)} ago`;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // -- the API ---------------------------------------------------------------------------------
  class AuthError extends Error {}

  async function api(path, key = state.key) {
    let r;
    try {
      r = await fetch(path, { headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
        cache: "no-store" });
    } catch (e) {
      throw new Error("the server did not answer");
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (r.status === 401) throw new AuthError((body && body.error && body.error.message) || "API key refused");
    if (!r.ok) {
      const err = new Error((body && body.error && body.error.message) || `HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  const enc = encodeURIComponent;

  async function serverTime() {
    const r = await fetch("/healthz", { cache: "no-store" });
    const body = await r.json();
    return body.time;
  }

  // -- routing and the refresh loop ------------------------------------------------------------
  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p));
    if (parts[0] === "sender" && parts[1]) return { view: "sender", id: parts[1] };
    if (parts[0] === "campaign" && parts[1]) return { view: "campaign", id: parts[1] };
    return { view: "overview" };
  }

  function crumbs(...items) {
    const nav = $("nav");
    const nodes = [h("a", { href: "#/", text: "Overview" })];
    for (const item of items) nodes.push(h("span", { class: "sep", text: "›" }), item);
    nav.replaceChildren(...nodes);
  }

  function markLive(ok, message) {
    const live = $("live");
    live.classList.toggle("stale", !ok);
    const text = ok ? `live · server time ${when(state.now)}` : `not updating: ${message} (retrying)`;
    live.replaceChildren(h("span", { class: "dot" }), text);
  }

  async function refresh() {
    clearTimeout(state.timer);
    const gen = ++state.gen; // navigation starts a newer refresh; an older answer is then dropped
    if (!state.key) return;
    if (document.hidden) {
      state.timer = setTimeout(refresh, POLL_MS);
      return;
    }
    const where = route();
    try {
      state.now = await serverTime();
      const content = await VIEWS[where.view](where);
      if (gen !== state.gen) return;
      const app = $("app");
      app.replaceChildren(content);
      drawCharts(app);
      markLive(true);
    } catch (e) {
      if (gen !== state.gen) return;
      if (e instanceof AuthError) {
        logout(`${e.message}: log in again.`);
        return;
      }
      markLive(false, e.message);
      if (e.status === 404) {
        $("app").replaceChildren(h("div", { class: "card" }, h("h2", { text: "Not found" }),
          h("p", { text: e.message }), h("a", { href: "#/", text: "Back to the overview" })));
      }
    }
    if (gen === state.gen) state.timer = setTimeout(refresh, POLL_MS);
  }

  // Charts are drawn after the page is in place, at the width their box really has.
  function chart(draw, label) {
    const box = h("div", { class: "chart-box", role: "img", "aria-label": label });
    box.draw = draw;
    return box;
  }

  function drawCharts(root) {
    for (const box of root.querySelectorAll(".chart-box")) {
      box.replaceChildren(box.draw(Math.max(260, Math.floor(box.clientWidth || 600))));
    }
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => drawCharts($("app")), 150);
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.key) refresh(); });
  window.addEventListener("hashchange", () => { state.forecast = null; refresh(); window.scrollTo(0, 0); });

  // -- shared pieces ---------------------------------------------------------------------------
  function figure(label, value, testid, extra) {
    return h("div", { class: "figure" }, h("span", { class: "label", text: label }),
      h("span", { class: `value${extra ? " small" : ""}`, "data-testid": testid, text: value }),
      extra ? h("span", { class: "muted small", text: extra }) : null);
  }

  function chip(text, cls, testid) {
    return h("span", { class: `chip ${cls || ""}`, "data-testid": testid, text });
  }

  function usageClass(used, limit) {
    if (limit == null || limit === 0) return "";
    const f = used / limit;
    return f >= 0.95 ? "bad" : f >= 0.7 ? "warn" : "";
  }

  function usageBar(used, limit) {
    const pct = limit ? Math.min(100, (100 * used) / limit) : 0;
    const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": limit ?? 0,
      "aria-valuenow": used });
    const fill = h("span", { class: `used ${usageClass(used, limit)}` });
    fill.style.width = `${pct}%`;
    bar.append(fill);
    return bar;
  }

  function stateBar(counts, total) {
    const bar = h("div", { class: "bar", "aria-hidden": "true" });
    for (const st of STATES) {
      const n = counts[st] || 0;
      if (!n || !total) continue;
      const seg = h("span", { class: `s-${st}`, title: `${st}: ${num(n)}` });
      seg.style.width = `${(100 * n) / total}%`;
      bar.append(seg);
    }
    return bar;
  }

  function pausesList(sender) {
    const all = [...Object.entries(sender.paused_reasons || {}).map(([r, u]) => [r, u, "all counted sending"]),
      ...Object.entries(sender.marketing_paused_reasons || {}).map(([r, u]) => [r, u, "marketing"])];
    if (!all.length) return null;
    return h("ul", { class: "pauses", "data-testid": "pauses" }, all.map(([reason, until, what]) =>
      h("li", { text: `${reason} — ${what} paused${until ? ` until ${when(until)} (${rel(until)})` : ""}` })));
  }

  function scopeTitle(scopeId, senders) {
    if (scopeId.startsWith("portfolio:")) return `Portfolio ${scopeId.slice("portfolio:".length)}`;
    return senders[0] ? `+${senders[0].display_phone_number.replace(/^\+/, "")}` : scopeId;
  }

  const phone = (sender) => `+${String(sender.display_phone_number).replace(/^\+/, "")}`;

  // Where the platform's webhooks (inbound messages, statuses) are forwarded, and how that goes.
  function forwarding(hook) {
    if (!hook.url) {
      return h("p", { class: "card empty", "data-testid": "webhook-forwarding",
        text: "Not forwarded: set a URL with PUT /v1/webhook or `tiergate webhook set URL`." });
    }
    return h("article", { class: "card", "data-testid": "webhook-forwarding" },
      h("div", { class: "title" }, h("span", { text: hook.url }),
        chip(hook.failed ? "failures" : "forwarding", hook.failed ? "warn" : "done")),
      h("div", { class: "figures" },
        figure("delivered", num(hook.delivered), "webhook-delivered",
          hook.last_delivered_at ? `last ${rel(hook.last_delivered_at)}` : "none yet"),
        figure("waiting", num(hook.pending), "webhook-pending"),
        figure("failed", num(hook.failed), "webhook-failed")),
      hook.last_error ? h("p", { class: "muted small", text: `last error: ${hook.last_error}` }) : null);
  }

  // -- overview --------------------------------------------------------------------------------
  async function overview() {
    const [senders, campaigns, hook] = await Promise.all([api("/v1/senders"), api("/v1/campaigns"),
      api("/v1/webhook")]);
    crumbs();
    const scopes = new Map();
    for (const x of senders) {
      if (!scopes.has(x.scope_id)) scopes.set(x.scope_id, []);
      scopes.get(x.scope_id).push(x);
    }
    const cards = [...scopes.entries()].map(([scopeId, members]) => {
      const first = members[0];
      return h("article", { class: "card scope-card", "data-testid": "scope-card", "data-scope": scopeId },
        h("div", { class: "title" },
          h("a", { href: `#/sender/${enc(first.id)}`, text: scopeTitle(scopeId, members) }),
          chip(first.tier, "tier"), h("span", { class: "muted small", text: `${first.policy} policy` })),
        h("div", { class: "figures" },
          figure("used / limit (24 h)", `${num(first.used_24h)} / ${limitText(first.limit)}`, "overview-used"),
          figure("next release", first.next_release_at ? clock(first.next_release_at) : "–", null,
            first.next_release_at ? rel(first.next_release_at) : "nothing counted")),
        usageBar(first.used_24h, first.limit),
        h("ul", { class: "senders" }, members.map((m) => h("li", {},
          h("a", { href: `#/sender/${enc(m.id)}`, text: phone(m) }), " ",
          h("span", { class: "muted small", text: m.id }), " ", chip(m.quality, m.quality),
          m.status !== "CONNECTED" ? [" ", chip(m.status, "warn")] : null))),
        members.map(pausesList));
    });
    const rows = campaigns.map((c) => h("tr", { "data-testid": "campaign-row" },
      h("td", {}, h("a", { href: `#/campaign/${enc(c.id)}`, text: c.name || c.id })),
      h("td", { text: c.sender }),
      h("td", {}, chip(c.done >= c.total ? "done" : c.state, c.done >= c.total ? "done" : c.state)),
      h("td", { class: "wrap" }, stateBar(c.counts, c.total)),
      h("td", { class: "r", text: `${num(c.done)} / ${num(c.total)}` }),
      h("td", { text: c.done >= c.total ? "finished" : c.eta ? `${when(c.eta)}` : "–" })));
    return h("div", {},
      h("section", {}, h("h2", { class: "section-title", text: "Senders and portfolios" }),
        cards.length ? h("div", { class: "grid" }, cards)
          : h("p", { class: "card empty", text: "No senders yet: register one with POST /v1/senders." })),
      h("section", {}, h("h2", { class: "section-title", text: "Campaigns" }),
        rows.length ? h("div", { class: "card table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["campaign", "sender", "state", "progress", "done", "planned finish"]
            .map((t, i) => h("th", { class: i === 4 ? "r" : "", text: t })))),
          h("tbody", {}, rows)))
          : h("p", { class: "card empty", text: "No campaigns yet." })),
      h("section", {}, h("h2", { class: "section-title", text: "Webhooks to your app" }), forwarding(hook)));
  }

  // -- one sender (and its scope) --------------------------------------------------------------
  async function senderView({ id }) {
    const path = `/v1/senders/${enc(id)}`;
    const wantForecast = !state.forecast || state.forecast.id !== id || Date.now() - state.forecast.at > FORECAST_MS;
    const [senders, timeline, ladder, events, detail] = await Promise.all([
      api("/v1/senders"), api(`${path}/timeline`), api(`${path}/ladder`), api(`${path}/events?limit=200`),
      wantForecast ? api(path) : null]);
    if (detail) state.forecast = { id, at: Date.now(), value: detail.forecast };
    const sender = senders.find((x) => x.id === id) || detail;
    if (!sender) throw Object.assign(new Error(`sender ${id} not found`), { status: 404 });
    const members = senders.filter((x) => x.scope_id === sender.scope_id);
    // Each member's own newest campaigns (the tenant-wide list is a page of the newest of all).
    const mine = (await Promise.all(members.map((m) => api(`/v1/campaigns?sender=${enc(m.id)}&limit=50`))))
      .flat().sort((a, b) => b.created_at - a.created_at);
    crumbs(h("span", { text: `Sender ${phone(sender)}` }));

    const head = h("div", { class: "page-head" },
      h("h1", { "data-testid": "sender-title", text: phone(sender) }),
      chip(sender.tier, "tier", "tier"), chip(sender.quality, sender.quality, "quality"),
      chip(sender.status, sender.status === "CONNECTED" ? "ok" : "warn", "status"),
      h("span", { class: "sub", text: `phone number id ${sender.id} · scope ${sender.scope_id} · ${sender.policy} `
        + `policy · ${sender.timezone}` }));

    const ladderCard = h("article", { class: "card" },
      h("h2", {}, "Tier ladder", h("span", { class: "aside", text: `${ladder.policy} policy` })),
      chart((w) => ladderChart(ladder, w), "tier ladder"),
      h("p", { class: "climb", "data-testid": "climb" }, climbText(ladder)),
      h("p", { class: "muted small", text: `${ladder.tier} set by ${ladder.tier_source}`
        + (ladder.tier_updated_at ? ` on ${when(ladder.tier_updated_at)}` : "") }));

    const windowCard = h("article", { class: "card" },
      h("h2", {}, "Rolling 24 h window",
        h("span", { class: "aside", text: members.length > 1 ? `shared by ${members.length} senders` : "" })),
      chart((w) => gaugeChart(timeline.used_24h, timeline.limit, w), "usage gauge"),
      h("div", { class: "figures" },
        figure("used", num(timeline.used_24h), "used"),
        figure("limit", limitText(timeline.limit), "limit"),
        figure("remaining", timeline.remaining == null ? "∞" : num(timeline.remaining), "remaining"),
        figure("next release", timeline.next_release_at ? clock(timeline.next_release_at) : "–", "next-release",
          timeline.next_release_at ? rel(timeline.next_release_at) : "nothing counted")),
      members.length > 1 ? h("p", { class: "muted small" }, "Senders in this portfolio: ",
        members.map((m, i) => [i ? ", " : "", h("a", { href: `#/sender/${enc(m.id)}`, text: phone(m) })])) : null);

    const freed = timeline.buckets.reduce((a, b) => a + b.freed, 0);
    const timelineCard = h("article", { class: "card span-all" },
      h("h2", {}, "Capacity freeing over the next 24 h",
        h("span", { class: "aside", "data-testid": "freed-24h", text: `${num(freed)} recipients leave the window` })),
      chart((w) => timelineChart(timeline, w), "release timeline"),
      h("div", { class: "legend" },
        h("span", { class: "key" }, h("span", { class: "swatch sw-freed" }), "recipients leaving the window per hour"),
        timeline.limit != null ? h("span", { class: "key" }, h("span", { class: "swatch line sw-avail" }),
          "room available afterwards (if nothing else is sent)") : null));

    const fc = state.forecast && state.forecast.value;
    const forecastCard = h("article", { class: "card" }, h("h2", {}, "Upgrade forecast"), forecastBody(fc));

    const history = events.filter((e) => HISTORY_KINDS.has(e.kind));
    const qualityCard = h("article", { class: "card span-2" },
      h("h2", {}, "Quality, status and pauses"),
      h("div", { class: "figures" },
        figure("quality", sender.quality, "quality-value"), figure("status", sender.status, "status-value")),
      pausesList(sender) || h("p", { class: "muted small", "data-testid": "pauses", text: "Not paused." }),
      h("h3", { class: "section-title", text: "History" }),
      history.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "history" },
        h("thead", {}, h("tr", {}, h("th", { text: "when" }), h("th", { text: "event" }), h("th", { text: "detail" }))),
        h("tbody", {}, history.slice(0, 30).map((e) => h("tr", {},
          h("td", { text: when(e.at) }), h("td", {}, chip(e.kind.replace("_", " "), eventClass(e.kind))),
          h("td", { class: "wrap", text: e.detail }))))))
        : h("p", { class: "muted small", text: "No tier, quality or pause changes yet." }));

    const campaignCard = h("article", { class: "card" }, h("h2", {}, "Campaigns"),
      mine.length ? h("ul", { class: "senders" }, mine.map((c) => h("li", {},
        h("a", { href: `#/campaign/${enc(c.id)}`, text: c.name || c.id }), " ",
        chip(c.done >= c.total ? "done" : c.state, c.done >= c.total ? "done" : c.state), " ",
        h("span", { class: "muted small", text: `${num(c.done)} / ${num(c.total)}` }))))
        : h("p", { class: "muted small", text: "No campaigns from this scope." }));

    return h("div", {}, head, h("div", { class: "grid three" }, ladderCard, windowCard, forecastCard, timelineCard,
      qualityCard, campaignCard));
  }

  function eventClass(kind) {
    if (kind === "paused" || kind === "tier_lowered") return "bad";
    if (kind === "resumed" || kind === "tier_raised") return "ok";
    return "";
  }

  function climbText(ladder) {
    const cur = ladder.steps.find((x) => x.current);
    if (!cur) return `${ladder.tier} is not on the ${ladder.policy} ladder.`;
    if (!cur.climb) return "Top of the ladder: no further tier.";
    return `Next step: ${cur.climb}.`;
  }

  function forecastBody(fc) {
    if (!fc) return h("p", { class: "muted", text: "Loading…" });
    const wrap = h("div", { "data-testid": "forecast" });
    if (!fc.next_tier) {
      wrap.append(h("p", { text: fc.note || "No further tier." }));
      return wrap;
    }
    wrap.append(h("div", { class: "figures" },
      figure("next tier", fc.next_tier, "forecast-next"),
      figure("more recipients", fc.more_recipients_needed == null ? "–" : num(fc.more_recipients_needed),
        "forecast-needed"),
      figure("days", fc.days_needed == null ? "–" : num(fc.days_needed), "forecast-days"),
      figure("at", fc.predicted_at ? when(fc.predicted_at) : "–", "forecast-at",
        fc.predicted_at ? rel(fc.predicted_at) : (fc.status || ""))));
    if (fc.unique_7d != null) {
      wrap.append(h("p", { class: "muted small", text: `${num(fc.unique_7d)} distinct recipients counted in the last 7 days.` }));
    }
    if (fc.note) wrap.append(h("p", { class: "small", text: fc.note }));
    return wrap;
  }

  // -- one campaign ----------------------------------------------------------------------------
  async function campaignView({ id }) {
    const [c, days, senders] = await Promise.all([api(`/v1/campaigns/${enc(id)}`),
      api(`/v1/campaigns/${enc(id)}/days`), api("/v1/senders")]);
    const sender = senders.find((x) => x.id === c.sender);
    crumbs(h("span", { text: `Campaign ${c.name || c.id}` }));
    const finished = c.done >= c.total;
    const pct = c.total ? Math.floor((100 * c.done) / c.total) : 100;
    let eta = "–", etaNote = "";
    if (finished) {
      eta = "finished";
      const last = days.finished_day && days.days[days.finished_day - 1];
      if (last) etaNote = `on day ${last.day}, ${WEEKDAYS[date(last.start).getDay()]} ${day(last.start)}`;
    }
    else if (c.state === "paused") { eta = "paused"; etaNote = "resume to continue"; }
    else if (c.state === "canceled") { eta = "canceled"; }
    else if (days.finish_by) { eta = `by ${when(days.finish_by)}`; etaNote = rel(days.finish_by); }

    const head = h("div", { class: "page-head" },
      h("h1", { "data-testid": "campaign-title", text: c.name || c.id }),
      chip(finished ? "done" : c.state, finished ? "done" : c.state, "campaign-state"),
      chip(c.category), chip(`${c.pacing} pacing`),
      c.archived_at ? h("span", { class: "chip", "data-testid": "campaign-archived",
        title: "message retention deleted its messages; its figures were kept",
        text: `archived ${day(c.archived_at)}` }) : null,
      h("span", { class: "sub" }, "from ", sender ? h("a", { href: `#/sender/${enc(sender.id)}`, text: phone(sender) })
        : c.sender, ` · created ${when(c.created_at)} · ${c.id}`));

    const present = STATES.filter((st) => c.counts[st]);
    const progress = h("article", { class: "card span-all" },
      h("h2", {}, "Progress", h("span", { class: "aside", text: `${pct}% done` })),
      h("div", { class: "figures" },
        figure("done", num(c.done), "done"), figure("total", num(c.total), "total"),
        figure("waiting", num(Math.max(0, c.total - c.done)), "waiting"),
        figure("ETA", eta, "eta", etaNote),
        figure("planned finish", days.planned_finish ? when(days.planned_finish) : "–", "planned-eta",
          `${c.plan.length} day plan`)),
      stateBar(c.counts, c.total),
      h("div", { class: "legend", "data-testid": "state-legend" }, present.map((st) => h("span", { class: "key" },
        h("span", { class: `swatch s-${st}` }), `${st} `, h("b", { class: "num", "data-testid": `count-${st}`,
          text: num(c.counts[st]) })))));

    const planCard = h("article", { class: "card span-all" },
      h("h2", {}, "Day by day: planned against sent",
        h("span", { class: "aside", text: `day ${days.today} now · days in ${days.timezone}` })),
      chart((w) => planChart(days, w), "plan chart"),
      h("div", { class: "legend" },
        h("span", { class: "key" }, h("span", { class: "swatch sw-planned" }), "planned sends"),
        h("span", { class: "key" }, h("span", { class: "swatch sw-actual" }), "sent"),
        h("span", { class: "key" }, h("span", { class: "swatch line sw-ptier" }), "planned tier limit"),
        h("span", { class: "key" }, h("span", { class: "swatch line sw-tier" }), "tier limit in force")));

    const table = h("article", { class: "card span-all table-wrap" }, h("table", { "data-testid": "plan-table" },
      h("thead", {}, h("tr", {}, ["day", "date", "planned tier", "planned", "planned total", "tier", "sent", "sent total"]
        .map((t, i) => h("th", { class: [0, 3, 4, 6, 7].includes(i) ? "r" : "", text: t })))),
      h("tbody", {}, days.days.map((d) => h("tr", { class: d.day === days.today ? "today" : "" },
        h("td", { class: "r", text: d.day }), h("td", { text: `${WEEKDAYS[date(d.start).getDay()]} ${day(d.start)}` }),
        h("td", { text: d.planned_tier || "–" }), h("td", { class: "r", text: num(d.planned) }),
        h("td", { class: "r", text: num(d.planned_cumulative) }), h("td", { text: d.tier || "–" }),
        h("td", { class: "r", text: d.sent == null ? "–" : num(d.sent) }),
        h("td", { class: "r", text: d.sent_cumulative == null ? "–" : num(d.sent_cumulative) }))))));

    return h("div", {}, head, h("div", { class: "grid" }, progress, planCard, table));
  }

  const VIEWS = { overview, sender: senderView, campaign: campaignView };

  // -- charts (inline SVG) ---------------------------------------------------------------------
  function ladderChart(ladder, width) {
    const steps = ladder.steps, n = steps.length;
    const height = 170, top = 26, bottom = 40, base = height - bottom;
    const col = width / n, gap = Math.min(10, col * 0.12);
    const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "ladder" });
    steps.forEach((step, i) => {
      const barH = ((i + 1) / n) * (base - top);
      const x = i * col + gap / 2, y = base - barH;
      const fill = step.current ? "#0b7a5a" : step.reached ? "#cfeee3" : "#e8edf1";
      svg.append(s("rect", { x, y, width: col - gap, height: barH, rx: 5, fill,
        "data-current": step.current ? "true" : null },
      s("title", { text: `${step.tier}: ${limitText(step.limit)} distinct recipients / 24 h`
        + (step.climb ? `\nto climb: ${step.climb}` : "") })));
      svg.append(s("text", { x: x + (col - gap) / 2, y: y - 7, "text-anchor": "middle",
        class: step.current ? "strong" : "", text: short(step.limit) }));
      svg.append(s("text", { x: x + (col - gap) / 2, y: base + 16, "text-anchor": "middle", text: step.tier.replace("TIER_", "") }));
      if (step.current) {
        svg.append(s("text", { x: x + (col - gap) / 2, y: base + 32, "text-anchor": "middle", class: "strong",
          text: "▲ now" }));
      }
    });
    svg.append(s("line", { x1: 0, x2: width, y1: base, y2: base, class: "axis" }));
    return svg;
  }

  function arc(cx, cy, r, from, to) {
    // angles in radians, measured counter-clockwise from the positive x axis (pi = left, 0 = right)
    const x1 = cx + r * Math.cos(from), y1 = cy - r * Math.sin(from);
    const x2 = cx + r * Math.cos(to), y2 = cy - r * Math.sin(to);
    return `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${r} ${r} 0 0 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`;
  }

  function gaugeChart(used, limit, width) {
    const w = Math.min(width, 320), height = Math.round(w * 0.58);
    const cx = w / 2, r = w * 0.4, cy = r + 14, stroke = Math.max(14, w * 0.075);
    const frac = limit ? Math.min(1, used / limit) : 0;
    const color = { "": "#0b7a5a", warn: "#c77700", bad: "#c2312f" }[usageClass(used, limit)];
    const svg = s("svg", { class: "chart", width: w, height, viewBox: `0 0 ${w} ${height}`, "data-testid": "gauge" },
      s("path", { d: arc(cx, cy, r, Math.PI, 0), stroke: "#e8edf1", "stroke-width": stroke, fill: "none",
        "stroke-linecap": "round" }));
    if (frac > 0) {
      svg.append(s("path", { d: arc(cx, cy, r, Math.PI, Math.PI * (1 - frac)), stroke: color, "stroke-width": stroke,
        fill: "none", "stroke-linecap": "round" }));
    }
    svg.append(
      s("text", { x: cx, y: cy - 6, "text-anchor": "middle", class: "big", text: num(used) }),
      s("text", { x: cx, y: cy + 14, "text-anchor": "middle",
        text: limit == null ? "unlimited tier" : `of ${num(limit)} · ${Math.round(frac * 100)}%` }));
    return svg;
  }

  function timelineChart(tl, width) {
    const height = 210, left = 44, right = tl.limit != null ? 52 : 14, top = 14, bottom = 30;
    const plotW = width - left - right, plotH = height - top - bottom;
    const n = tl.buckets.length, bw = plotW / n;
    const yMax = niceMax(Math.max(1, ...tl.buckets.map((b) => b.freed)));
    const y = (v) => top + plotH - (v / yMax) * plotH;
    const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "timeline" });
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      svg.append(s("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid-line" }),
        s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", text: short(Math.round(v)) }));
    }
    tl.buckets.forEach((b, i) => {
      const x = left + i * bw;
      if (b.freed > 0) {
        svg.append(s("rect", { x: x + 1, y: y(b.freed), width: Math.max(1, bw - 2), height: top + plotH - y(b.freed),
          fill: "#0b7a5a", rx: 2 }, s("title", { text: `${clock(b.start)}–${clock(b.end)}: ${num(b.freed)} leave the window`
          + (b.available_after != null ? `; ${num(b.available_after)} available afterwards` : "") })));
      }
      const every = plotW / n < 22 ? 6 : 3;
      if (i % every === 0) {
        svg.append(s("text", { x, y: height - 10, "text-anchor": i === 0 ? "start" : "middle",
          text: i === 0 ? "now" : clock(b.start) }));
      }
    });
    if (tl.limit != null) {
      const y2 = (v) => top + plotH - (v / Math.max(1, tl.limit)) * plotH;
      let d = `M ${left} ${y2(tl.remaining)}`;
      tl.buckets.forEach((b, i) => {
        const x = left + (i + 1) * bw;
        d += ` H ${x.toFixed(1)} V ${y2(b.available_after).toFixed(1)}`;
      });
      svg.append(s("path", { d, fill: "none", stroke: "#1f5fbf", "stroke-width": 2 }),
        s("text", { x: left + plotW + 6, y: y2(tl.limit) + 4, text: short(tl.limit) }),
        s("text", { x: left + plotW + 6, y: y2(0) + 4, text: "0" }));
    }
    svg.append(s("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: "axis" }));
    if (!tl.buckets.some((b) => b.freed)) {
      svg.append(s("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle", class: "strong",
        text: tl.used_24h ? "nothing leaves the window in the next 24 h" : "no counted recipients: full capacity now" }));
    }
    return svg;
  }

  function planChart(data, width) {
    const days = data.days, n = days.length;
    const height = 260, left = 50, right = 14, top = 28, bottom = 36;
    const plotW = width - left - right, plotH = height - top - bottom;
    const gw = plotW / Math.max(1, n);
    const sends = Math.max(1, ...days.map((d) => Math.max(d.planned, d.sent || 0)));
    const tierLimit = (t) => (t ? tierValue(t) : null);
    const limits = days.flatMap((d) => [tierLimit(d.planned_tier), tierLimit(d.tier)]).filter((v) => v != null && v <= 2.5 * sends);
    const yMax = niceMax(Math.max(sends, ...limits) * 1.05);
    const y = (v) => top + plotH - (Math.min(v, yMax) / yMax) * plotH;
    const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "plan-chart" });
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      svg.append(s("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid-line" }),
        s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", text: short(Math.round(v)) }));
    }
    const bw = Math.max(2, Math.min(26, gw * 0.36));
    const labelEvery = Math.ceil(n / Math.max(1, Math.floor(plotW / 48)));
    days.forEach((d, i) => {
      const gx = left + i * gw, mid = gx + gw / 2;
      if (d.day === data.today) {
        svg.append(s("rect", { x: gx, y: top - 18, width: gw, height: plotH + 18, fill: "#f0faf6" }),
          s("text", { x: mid, y: top - 6, "text-anchor": "middle", class: "strong", text: "today" }));
      }
      svg.append(s("rect", { x: mid - bw - 1, y: y(d.planned), width: bw, height: top + plotH - y(d.planned),
        fill: "#cfd8df", rx: 2 }, s("title", { text: `day ${d.day}: ${num(d.planned)} planned at ${d.planned_tier || "–"}` })));
      if (d.sent != null) {
        svg.append(s("rect", { x: mid + 1, y: y(d.sent), width: bw, height: top + plotH - y(d.sent), fill: "#0b7a5a",
          rx: 2, "data-day": d.day, "data-sent": d.sent }, s("title", { text: `day ${d.day}: ${num(d.sent)} sent at ${d.tier}` })));
      }
      if (i % labelEvery === 0) {
        svg.append(s("text", { x: mid, y: height - 20, "text-anchor": "middle", text: `D${d.day}` }),
          s("text", { x: mid, y: height - 6, "text-anchor": "middle", text: day(d.start) }));
      }
    });
    const step = (key, color, dash) => {
      let d = "";
      let labelled = null;
      days.forEach((day_, i) => {
        const v = tierLimit(day_[key]);
        if (v == null && day_[key] == null) return;
        const yy = v == null ? top : y(v);
        const x0 = left + i * gw, x1 = x0 + gw;
        d += d ? ` L ${x0.toFixed(1)} ${yy.toFixed(1)} H ${x1.toFixed(1)}` : `M ${x0.toFixed(1)} ${yy.toFixed(1)} H ${x1.toFixed(1)}`;
        if (day_[key] !== labelled) {
          labelled = day_[key];
          svg.append(s("text", { x: x0 + 3, y: yy - 4, fill: color, text: `${short(v)}${v != null && v > yMax ? " ↑" : ""}` }));
        }
      });
      if (d) svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash || null }));
    };
    step("planned_tier", "#9aa9b6", "5 4");
    step("tier", "#1f5fbf", null);
    svg.append(s("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: "axis" }));
    return svg;
  }

  function tierValue(name) {
    const m = /^TIER_(\d+)(K|M)?$/.exec(name);
    if (!m) return null; // unlimited (or unknown): drawn at the top
    return Number(m[1]) * (m[2] === "K" ? 1e3 : m[2] === "M" ? 1e6 : 1);
  }

  // -- login -----------------------------------------------------------------------------------
  function showLogin(message) {
    $("login").hidden = false;
    $("app").replaceChildren();
    $("nav").replaceChildren();
    $("live").replaceChildren();
    $("tenant").textContent = "";
    $("logout").hidden = true;
    $("login-error").textContent = message || "";
    $("key").focus();
  }

  async function showApp() {
    $("login").hidden = true;
    $("logout").hidden = false;
    try {
      const tenant = await api("/v1/tenant");
      $("tenant").textContent = `tenant ${tenant.name}`;
    } catch (e) {
      if (e instanceof AuthError) { logout(`${e.message}: log in again.`); return; }
    }
    refresh();
  }

  function logout(message) {
    clearTimeout(state.timer);
    state.gen++;
    state.key = null;
    state.forecast = null;
    sessionStorage.removeItem(KEY);
    showLogin(message);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    $("login-button").disabled = true;
    try {
      await api("/v1/tenant", key);
      state.key = key;
      sessionStorage.setItem(KEY, key);
      $("key").value = "";
      $("login-error").textContent = "";
      await showApp();
    } catch (e) {
      $("login-error").textContent = e instanceof AuthError
        ? "That key was refused: check it, or create one with `tiergate keys create`."
        : `Could not log in: ${e.message}`;
    } finally {
      $("login-button").disabled = false;
    }
  });
  $("logout").addEventListener("click", () => logout("Logged out."));

  if (state.key) showApp();
  else showLogin();
})();
