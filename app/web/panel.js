/* Threadline sidebar: the Outlook task pane (/panel/outlook) and the standalone
   panel (/panel?email=..., /panel/contact/{id}).

   Safety: every value that comes from an email or the API is put on the page
   with textContent / attribute setters, never innerHTML. Tokens live in
   localStorage (standalone) or Office roamingSettings (Outlook), never in URLs.
   Speed: one call (GET /api/lookup) gives card, summary and the first page. */
(function () {
  "use strict";
  if (window.__threadlineUnsupported) return;  // legacy.js has explained why

  const MSAL_URL = "https://cdn.jsdelivr.net/npm/@azure/msal-browser@3.27.0/lib/msal-browser.min.js";
  // Subresource integrity of that exact file (from the npm package): a changed CDN copy is refused.
  const MSAL_SRI = "sha384-8zg7Eb13Jv4vByCkXozj1LKSUykPghS+Zp1Q9BA8lYkMDbushxoDjh+RQ+4r1DNd";
  const TOKEN_KEY = "threadline.token";
  const LOADING_AFTER_MS = 200; // a quicker answer replaces the last person without a flash of "Loading"
  const ANSWER_WITHIN_MS = 20000; // then a call is given up and the rep told so (api below)
  const body = document.body;
  const mode = body.dataset.mode; // outlook | panel
  const inOutlook = mode === "outlook";
  const main = document.getElementById("main");
  const statusBox = document.getElementById("status");

  const state = {
    config: null,
    configPromise: null,
    token: null,
    entra: null, // {token, expires}
    entraRefused: null, // the Entra token the server last refused (not to be taken from MSAL's cache again)
    msal: null,
    mail: null, // the Outlook item, reduced
    people: [], // external participants of the mail [{email, name}]
    email: null, // the person asked for
    shownEmail: null, // the person whose card or "not in Threadline yet" is on screen
    contact: null,
    nextCursor: null,
    loadingPage: false,
    seq: 0,
    me: null,
    observer: null,
    series: new Map(), // recurring meeting shown in the timeline: key -> {node, starts}
  };

  // -- DOM helpers (text only) -------------------------------------------------------
  // Bidirectional controls in names and subjects ("\u202eGNP.exe" drawn as "exe.PNG"):
  // what reorders text shows as a visible [U+202E], the invisible marks go. Only on
  // screen; form values and what is sent back keep the original (as app/textsafe.py).
  const BIDI_REORDERING = /[\u202A-\u202E\u2066-\u2069]/g;
  const BIDI_MARKS = /[\u200E\u200F\u061C]/g;
  function shown(text) {
    return String(text).replace(BIDI_MARKS, "")
      .replace(BIDI_REORDERING, c => "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]");
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = shown(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "title" || k === "aria-label") node.setAttribute(k, shown(v));
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    // Not children.flat(): EdgeHTML (older Outlook desktop) lacks it.
    for (const child of [].concat(...children)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(shown(child)));
    }
    return node;
  }
  function clear(node) {
    if (node === main) main.removeAttribute("aria-busy");
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function say(message, kind) {
    statusBox.textContent = shown(message || "");
    statusBox.className = "status" + (kind ? " " + kind : "");
  }
  let uid = 0;
  function field(labelText, input) {
    const id = input.id || ("f" + (++uid));
    input.id = id;
    return [el("label", { for: id, text: labelText }), input];
  }
  function fmtDate(value, withTime) {
    if (!value) return "—";
    const d = new Date(value);
    if (isNaN(d)) return "—";
    const opts = { year: "numeric", month: "short", day: "numeric" };
    if (withTime) { opts.hour = "2-digit"; opts.minute = "2-digit"; }
    return d.toLocaleString(undefined, opts);
  }
  // "today", "yesterday", "3 days ago": calendar days in the rep's time zone (dates.js).
  function ago(value) { return window.ThreadlineDates.relativeDay(value); }
  function domainOf(address) { return (address || "").split("@").pop().toLowerCase(); }

  // -- storage and tokens --------------------------------------------------------------
  function storedToken() {
    try {
      if (inOutlook && window.Office && Office.context && Office.context.roamingSettings) {
        const t = Office.context.roamingSettings.get("threadlineToken");
        if (t) return t;
      }
    } catch (e) { /* not in Outlook */ }
    try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function storeToken(token) {
    state.token = token;
    try { token ? localStorage.setItem(TOKEN_KEY, token) : localStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ }
    // Whoever signs in next on this browser does not see whom the last one looked at.
    if (!token) try { localStorage.removeItem("threadline.recent"); } catch (e) { /* private mode */ }
    try {
      if (inOutlook && window.Office && Office.context && Office.context.roamingSettings) {
        if (token) Office.context.roamingSettings.set("threadlineToken", token);
        else Office.context.roamingSettings.remove("threadlineToken");
        Office.context.roamingSettings.saveAsync(function () {});
      }
    } catch (e) { /* ignore */ }
  }

  function config() {
    if (!state.configPromise) {
      state.configPromise = fetch("/panel/config.json", { headers: { Accept: "application/json" } })
        .then(r => r.json()).then(c => (state.config = c))
        .catch(() => (state.config = { stages: [], entra: null }));
    }
    return state.configPromise;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.crossOrigin = "anonymous"; s.integrity = MSAL_SRI;
      s.onload = resolve; s.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }

  // Microsoft 365: nested app authentication, falling back to the Office dialog API.
  async function entraToken(interactive) {
    const cfg = await config();
    if (!inOutlook || !cfg.entra) return null;
    if (state.entra && state.entra.expires - Date.now() > 120000) return state.entra.token;
    const scopes = [cfg.entra.scope_uri];
    const naa = Office.context.requirements && Office.context.requirements.isSetSupported &&
      Office.context.requirements.isSetSupported("NestedAppAuth", "1.1");
    if (naa) {
      if (!state.msal) {
        await loadScript(MSAL_URL);
        state.msal = await window.msal.createNestablePublicClientApplication({
          auth: { clientId: cfg.entra.client_id, authority: cfg.entra.authority + "/" + (cfg.entra.tenant || "organizations") },
        });
      }
      let result;
      try {
        result = await state.msal.acquireTokenSilent({ scopes, forceRefresh: !!state.entraRefused });
      } catch (e) {
        if (!interactive) return null;
        result = await state.msal.acquireTokenPopup({ scopes });
      }
      if (result.accessToken === state.entraRefused) { // still the refused one
        if (!interactive) return null;
        result = await state.msal.acquireTokenPopup({ scopes });
      }
      state.entraRefused = null;
      state.entra = { token: result.accessToken, expires: result.expiresOn ? new Date(result.expiresOn).getTime() : Date.now() + 3000000 };
      return state.entra.token;
    }
    if (!interactive) return null;
    return new Promise((resolve, reject) => {
      Office.context.ui.displayDialogAsync(location.origin + "/panel/signin", { height: 60, width: 30 }, res => {
        if (res.status !== "succeeded" && res.status !== Office.AsyncResultStatus.Succeeded) {
          reject(new Error("could not open the sign-in window")); return;
        }
        const dialog = res.value;
        dialog.addEventHandler(Office.EventType.DialogMessageReceived, arg => {
          dialog.close();
          try {
            const msg = JSON.parse(arg.message);
            if (msg.error) { reject(new Error(msg.error)); return; }
            state.entra = { token: msg.token, expires: msg.expires || Date.now() + 3000000 };
            resolve(msg.token);
          } catch (e) { reject(e); }
        });
      });
    });
  }

  async function bearer() {
    if (state.token) return state.token;
    const stored = storedToken();
    if (stored) { state.token = stored; return stored; }
    try { return await entraToken(false); } catch (e) { return null; }
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail || ("HTTP " + status)); this.status = status; }
  }

  async function api(method, path, payload, retried) {
    const token = await bearer();
    if (!token) {
      offerSignIn();
      throw new ApiError(401, "Sign in to see this person's history.");
    }
    const headers = { Accept: "application/json", Authorization: "Bearer " + token };
    // A server that never answers must not leave "Loading …" (or a form being sent) on screen for good.
    const gaveUp = new AbortController();
    const timer = setTimeout(() => gaveUp.abort(), ANSWER_WITHIN_MS);
    const init = { method, headers, cache: "no-store", signal: gaveUp.signal };
    if (payload !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(payload); }
    let r, data = null;
    try {
      r = await fetch(path, init);
      try { data = await r.json(); } catch (e) { if (gaveUp.signal.aborted) throw e; data = null; }
    } catch (e) {
      if (gaveUp.signal.aborted) {
        const waited = "Threadline did not answer within " + ANSWER_WITHIN_MS / 1000 + " seconds";
        // A change may have been made all the same: saving it again blindly could make it twice.
        throw new ApiError(0, method === "GET" ? waited + ": try again." : waited + ". It may have been saved all the same: look before saving again.");
      }
      // No answer at all (offline, server down, refused): the browser's "Failed to fetch" says nothing to a rep.
      throw new ApiError(0, "Threadline could not be reached: check your connection, then try again.");
    } finally {
      clearTimeout(timer);
    }
    if (r.status === 401) {
      // Sent with a token the rep has replaced since (signed in again while it was on its way):
      // it says nothing about the new one, which is tried once instead of being forgotten.
      if (!retried && token !== (await bearer())) return api(method, path, payload, true);
      // The token was revoked or has expired while the pane was open: forget it, and offer a
      // sign-in above whatever the rep was doing, so a note being typed is not lost.
      if (state.entra && state.entra.token === token) {
        state.entra = null;
        state.entraRefused = token; // MSAL's cache would hand the same one back: ask Entra anew
      } else if (state.token === token || storedToken() === token) {
        storeToken(null);
      }
      offerSignIn();
      const reason = data && typeof data.detail === "string" ? data.detail : "the token was revoked or has expired";
      throw new ApiError(401, "your sign-in was refused (" + reason + "): sign in again.");
    }
    if (!r.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : ("HTTP " + r.status);
      const err = new ApiError(r.status, detail);
      err.data = data;
      throw err;
    }
    return data;
  }

  function lookupPath(email) {
    // The exact request bench/sidebar.py measures: email only, "@" left as is.
    return "/api/lookup?email=" + encodeURIComponent(email).replace(/%40/g, "@");
  }

  // -- sign-in ---------------------------------------------------------------------------
  // The ways to sign in (a personal access token; Microsoft in Outlook when configured); `done`
  // runs once signed in. Used by the sign-in screen and by the strip offered mid-session.
  function signInControls(err, done) {
    const input = el("input", { type: "password", autocomplete: "off", spellcheck: "false", name: "token" });
    const form = el("form", {
      class: "token-form",
      onsubmit: async ev => {
        ev.preventDefault();
        const token = input.value.trim();
        if (!token) { err.textContent = "Paste your personal access token."; return; }
        storeToken(token);
        done();
      },
    },
    field("Personal access token", input),
    el("p", { class: "muted", text: "Ask your admin for one (threadline user token you@company.com). It is kept on this device." }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Save token" })));
    const parts = [];
    if (inOutlook && state.config && state.config.entra) {
      parts.push(el("div", { class: "actions" }, el("button", {
        type: "button", class: "primary", text: "Sign in with Microsoft",
        onclick: async () => {
          try { storeToken(null); await entraToken(true); done(); }
          catch (e) { err.textContent = "Microsoft sign-in failed: " + e.message; }
        },
      })), el("p", { class: "muted", text: "Not on Microsoft 365? Use a personal access token:" }));
    }
    parts.push(form);
    return { parts, input };
  }

  function showSignIn(message) {
    state.seq++;
    body.dataset.state = "signin";
    clear(main);
    const err = el("p", { class: "error", role: "alert", text: message || "" });
    const { parts, input } = signInControls(err, start);
    main.append(el("h1", { text: "Sign in to Threadline" }), err, ...parts);
    input.focus();
  }

  // Mid-session (a note half typed, a task being ticked): sign in above it, keep everything else.
  function offerSignIn() {
    if (body.dataset.state === "signin" || document.getElementById("reauth")) return;
    const err = el("p", { class: "error", role: "alert",
      text: "Your sign-in has ended: the token was revoked or has expired. Sign in again here; what you typed stays below." });
    const { parts } = signInControls(err, () => {
      strip.remove();
      say("Signed in again: you can save now.", "okay");
    });
    const strip = el("section", { id: "reauth", class: "reauth", "aria-label": "Sign in again" }, err, ...parts);
    main.prepend(strip);
  }

  // -- the mail being read (Outlook) ------------------------------------------------------
  function addr(a) { return a && a.emailAddress ? { email: String(a.emailAddress).toLowerCase(), name: a.displayName || "" } : null; }

  function readItem() {
    const item = Office.context.mailbox.item;
    if (!item) return null;
    const me = ((Office.context.mailbox.userProfile || {}).emailAddress || "").toLowerCase();
    const from = addr(item.from || item.sender);
    const to = (item.to || []).map(addr).filter(Boolean);
    const cc = (item.cc || []).map(addr).filter(Boolean);
    const ownDomain = domainOf(me);
    const seen = new Set();
    const people = [];
    for (const p of [from, ...to, ...cc]) {
      if (!p || seen.has(p.email) || p.email === me || (ownDomain && domainOf(p.email) === ownDomain)) continue;
      seen.add(p.email);
      people.push(p);
    }
    const created = item.dateTimeCreated instanceof Date ? item.dateTimeCreated : (item.dateTimeCreated ? new Date(item.dateTimeCreated) : null);
    return {
      from, to, cc, people,
      subject: item.subject || "",
      internetMessageId: item.internetMessageId || "",
      conversationId: item.conversationId || "",
      date: created && !isNaN(created) ? created.toISOString() : null,
    };
  }

  function onItemChanged() {
    state.mail = readItem();
    if (!state.mail) {
      state.seq++;
      body.dataset.state = "empty";
      clear(main);
      main.append(dayView(false), el("p", { class: "muted", text: "Select an email to see who it is from." }));
      return;
    }
    state.people = state.mail.people;
    if (!state.people.length) {
      state.seq++;
      body.dataset.state = "internal";
      clear(main);
      main.append(el("h1", { text: state.mail.subject || "(no subject)" }),
        el("p", { class: "muted", text: "Only people from your organisation are on this email." }));
      return;
    }
    show(state.people[0].email);
  }

  // -- theme ---------------------------------------------------------------------------------
  function luminance(hex) {
    const m = /^#?([0-9a-f]{6})$/i.exec(String(hex || "").trim());
    if (!m) return 1;
    const n = parseInt(m[1], 16);
    const c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function applyOfficeTheme(theme) {
    theme = theme || (Office.context && Office.context.officeTheme);
    if (!theme || !theme.bodyBackgroundColor) return;
    const dark = luminance(theme.bodyBackgroundColor) < 0.25;
    body.classList.toggle("dark", dark);
    const root = body.style; // inline: wins over the .dark defaults
    root.setProperty("--bg", theme.bodyBackgroundColor);
    if (theme.bodyForegroundColor) root.setProperty("--fg", theme.bodyForegroundColor);
    if (theme.controlBackgroundColor) root.setProperty("--ctl-bg", theme.controlBackgroundColor);
    if (theme.controlForegroundColor) root.setProperty("--ctl-fg", theme.controlForegroundColor);
    body.dataset.theme = dark ? "dark" : "light";
  }

  // -- showing a person -------------------------------------------------------------------------
  async function show(email) {
    const seq = ++state.seq;
    // Refreshing the person on screen keeps their card until the answer; another person's
    // card is not left under this email while a slow answer is on its way (a note typed
    // there would go to them), so it gives way to "Loading …" unless the answer is quick.
    const showing = (body.dataset.state === "ready" || body.dataset.state === "unknown") && state.shownEmail === email;
    if (!showing) {
      state.shownEmail = null;
      const person = state.people.find(p => p.email === email);
      setTimeout(() => {
        if (seq !== state.seq || body.dataset.state !== "loading") return;
        clear(main);
        main.append(el("p", { class: "muted loading", text: "Loading " + ((person && person.name) || email) + "…" }));
        main.setAttribute("aria-busy", "true");
      }, LOADING_AFTER_MS);
    }
    state.email = email;
    body.dataset.state = "loading";
    body.dataset.email = email;
    say("");
    performance.clearMarks(); performance.clearMeasures();
    performance.mark("tl:request");
    let data;
    try {
      [data] = await Promise.all([api("GET", lookupPath(email)), config()]);
    } catch (e) {
      if (seq !== state.seq) return;
      if (e.status === 404) {
        performance.mark("tl:api");
        await config();
        if (seq !== state.seq) return;
        renderUnknown(email, e.data && e.data.unknown);
        paintMark();
        return;
      }
      if (e.status === 401) {
        await config();
        if (seq !== state.seq) return;
        storeToken(null);
        showSignIn(e.message);
        return;
      }
      body.dataset.state = "error";
      clear(main);
      main.append(el("p", { class: "error", role: "alert", text: "Could not load: " + e.message }),
        el("button", { type: "button", text: "Try again", onclick: () => show(email) }));
      return;
    }
    if (seq !== state.seq) return; // the rep moved on to another mail
    performance.mark("tl:api");
    render(data);
    paintMark();
  }

  function paintMark() {
    requestAnimationFrame(() => {
      performance.mark("tl:painted");
      try { performance.measure("tl:first-useful-paint", "tl:api", "tl:painted"); } catch (e) { /* marks cleared */ }
    });
  }

  function peopleSwitcher() {
    if (state.people.length < 2) return null;
    return el("nav", { class: "people", "aria-label": "People on this email" },
      state.people.map(p => el("button", {
        type: "button", "aria-pressed": p.email === state.email ? "true" : "false",
        title: p.email, text: p.name || p.email, onclick: () => show(p.email),
      })));
  }

  function fullLink(contactId) {
    if (body.classList.contains("full")) return null;
    return el("a", { class: "full-link", href: "/panel/contact/" + encodeURIComponent(contactId), target: "_blank", rel: "noopener", text: "Open full record ↗" });
  }

  function render(data) {
    const c = data.contact;
    const s = data.summary || {};
    state.contact = c;
    state.shownEmail = state.email;
    rememberPerson(c);
    body.dataset.state = "ready";
    body.dataset.contactId = c.id;
    clear(main);
    const stages = (state.config && state.config.stages) || [];

    // Card
    const stageSelect = el("select", { name: "stage", onchange: stageSaver(c) },
      el("option", { value: "", text: "—" }), stages.map(st => el("option", { value: st, text: st, selected: c.stage === st })));
    const company = c.company ? el("span", { class: "chip company", title: c.company.domain, text: c.company.name }) : null;
    const facts = el("dl", { class: "facts" },
      el("dt", { text: "Email" }), el("dd", {}, el("a", { href: "mailto:" + c.email, text: c.email })),
      c.phone ? [el("dt", { text: "Phone" }), el("dd", { title: source(c, "phone") }, el("a", { href: "tel:" + c.phone.replace(/[^+0-9]/g, ""), text: c.phone }))] : null,
      c.mobile ? [el("dt", { text: "Mobile" }), el("dd", { class: "mobile", title: source(c, "mobile") }, el("a", { href: "tel:" + c.mobile.replace(/[^+0-9]/g, ""), text: c.mobile }))] : null,
      c.website ? [el("dt", { text: "Website" }), el("dd", { class: "website", title: source(c, "website") },
        /^https?:\/\//i.test(c.website) ? el("a", { href: c.website, target: "_blank", rel: "noopener noreferrer", text: c.website }) : c.website)] : null,
      c.company_name && (!c.company || c.company.name !== c.company_name) ? [el("dt", { text: "Works at" }), el("dd", { class: "signed-company", title: source(c, "company_name"), text: c.company_name })] : null,
      el("dt", { text: "Owner" }), el("dd", { class: "owner" }, c.owner ? (c.owner.name || c.owner.email) : [
        el("span", { class: "muted", text: "nobody yet · " }),
        el("button", { type: "button", class: "link take-owner", text: "make me the owner", onclick: async () => {
          try {
            const me = await api("GET", "/api/me");
            await patchContact({ owner_id: me.id }, "You own this contact now");
          } catch (e) { say("Not saved: " + e.message, "error"); }
        } })]),
      el("dt", { text: "Tags" }), el("dd", { class: "tags" }, (c.tags || []).length ? c.tags.map(t => el("span", { class: "chip", text: t })) : el("span", { class: "muted", text: "none" })));
    const card = el("section", { class: "card", "aria-labelledby": "contact-name" },
      peopleSwitcher(),
      el("h1", { id: "contact-name", text: c.name || c.email }),
      el("p", { class: "row" }, c.title ? el("span", { class: "title", title: source(c, "title"), text: c.title }) : null, company),
      facts,
      el("div", { class: "row" }, ...field("Lifecycle stage", stageSelect)),
      el("div", { class: "actions" },
        el("button", { type: "button", text: "Edit", "aria-expanded": "false", onclick: ev => toggleForm(ev.currentTarget, editForm(c)) }),
        el("button", { type: "button", text: "Add note", "aria-expanded": "false", onclick: ev => toggleForm(ev.currentTarget, noteForm(c)) }),
        el("button", { type: "button", text: "Add task", "aria-expanded": "false", onclick: ev => toggleForm(ev.currentTarget, taskForm(c)) })),
      el("div", { id: "form-slot" }),
      mailActions(c.email),
      fullLink(c.id));
    main.append(card);

    // Summary
    const colleagues = s.colleagues || [];
    main.append(el("section", { "aria-labelledby": "h-summary" },
      el("h2", { id: "h-summary", text: "Relationship" }),
      el("div", { class: "stats" },
        el("div", {}, el("strong", { text: s.emails_in || 0 }), el("span", { text: "emails in" })),
        el("div", {}, el("strong", { text: s.emails_out || 0 }), el("span", { text: "emails out" })),
        el("div", {}, el("strong", { text: s.meetings || 0 }), el("span", { text: "meetings" }))),
      el("p", { class: "meta" }, "First contact ", fmtDate(s.first_interaction_at), " · last ", ago(s.last_interaction_at)),
      colleagues.length ? el("ul", { class: "plain colleagues", "aria-label": "Who knows them best" },
        colleagues.map(k => el("li", { title: k.strength_explanation || "" }, el("span", { text: k.name || k.email }),
          el("span", { class: "strength", text: " " + (k.strength || 0), "aria-label": "strength " + (k.strength || 0) + ": " + (k.strength_explanation || "") }),
          el("span", { class: "meta", text: " · " + k.interactions + (k.interactions === 1 ? " interaction, " : " interactions, ") + ago(k.last_interaction_at) })))) :
        el("p", { class: "muted", text: "No colleague has emailed them yet." })));

    // Upcoming meetings, apart from the timeline (which holds what already happened);
    // the occurrences of one recurring series are one entry.
    const upcoming = data.upcoming || (data.next_meeting ? [data.next_meeting] : []);
    state.series = new Map();
    if (upcoming.length) {
      const groups = groupSeries(upcoming);
      const past = ((data.timeline || {}).items || []).filter(it => seriesKey(it));
      main.append(el("section", { "aria-labelledby": "h-next" },
        el("h2", { id: "h-next", text: groups.length === 1 ? "Next meeting" : "Upcoming meetings" }),
        el("ul", { class: "plain upcoming" }, groups.map(g => {
          const m = g[0];
          const key = seriesKey(m);
          let when = fmtDate(m.occurred_at, true);
          if (key) {
            const starts = g.concat(past.filter(it => seriesKey(it) === key)).map(it => it.occurred_at);
            when = (window.ThreadlineDates.cadence(starts) || "repeats") + ", next on " + when;
          }
          return el("li", { class: key ? "series" : null },
            el("p", { class: "subject", text: m.subject || "(no title)" }),
            el("p", { class: "meta", text: when + (m.location ? " · " + m.location : "") }));
        }))));
    }
    if (data.last_meeting) {
      const m = data.last_meeting;
      main.append(el("p", { class: "meta last-meeting" }, "Last meeting: ", el("span", { text: m.subject || "(no title)" }),
        " · " + fmtDate(m.occurred_at, true)));
    }

    // The company, above the timeline: the timeline pages in as the rep scrolls, so
    // anything below it would keep moving out of reach.
    const others = (data.company_contacts || []).filter(p => p.id !== c.id);
    if (c.company && others.length) {
      main.append(el("section", { "aria-labelledby": "h-company" },
        el("h2", { id: "h-company", text: "Also at " + c.company.name }),
        el("ul", { class: "plain company-contacts" }, others.map(p => el("li", {},
          el("button", { type: "button", class: "link", text: p.name || p.email, onclick: () => openPerson(p.email) }),
          p.title ? el("span", { class: "meta", text: " · " + p.title }) : null)))));
    }

    // Timeline
    const list = el("ol", { class: "timeline", id: "timeline", "aria-label": "Timeline, newest first" });
    const more = el("button", { type: "button", class: "sentinel", text: "Load older", onclick: () => loadMore() });
    // Deals on this email and with this person (deals.js), right above the timeline: it fills in
    // after the first paint, so nothing above it (the card, the company section) moves.
    if (window.ThreadlineDeals) main.append(window.ThreadlineDeals.section({ api, el, field, say, contact: c, mail: state.mail }));
    main.append(el("section", { "aria-labelledby": "h-timeline" }, el("h2", { id: "h-timeline", text: "Timeline" }), list, more));
    const tl = data.timeline || { items: [], next_cursor: null };
    appendItems(list, tl.items);
    if (!tl.items.length) list.append(el("li", { class: "muted empty", text: "Nothing yet." }));
    setCursor(tl.next_cursor, more);
  }

  function openPerson(email) {
    if (!state.people.some(p => p.email === email)) state.people = state.people.concat([{ email, name: "" }]);
    show(email);
  }

  function setCursor(cursor, button) {
    state.nextCursor = cursor;
    button = button || main.querySelector(".sentinel");
    if (!button) return;
    button.hidden = !cursor;
    if (state.observer) state.observer.disconnect();
    if (cursor && "IntersectionObserver" in window) {
      state.observer = new IntersectionObserver(entries => { if (entries.some(e => e.isIntersecting)) loadMore(); }, { rootMargin: "200px" });
      state.observer.observe(button);
    }
  }

  async function loadMore() {
    if (!state.nextCursor || state.loadingPage || !state.contact) return;
    const seq = state.seq;
    state.loadingPage = true;
    try {
      const page = await api("GET", "/api/contacts/" + encodeURIComponent(state.contact.id) + "/timeline?cursor=" + encodeURIComponent(state.nextCursor));
      if (seq !== state.seq) return;
      const list = document.getElementById("timeline");
      appendItems(list, page.items);
      setCursor(page.next_cursor);
    } catch (e) {
      say("Could not load older items: " + e.message, "error");
    } finally {
      state.loadingPage = false;
    }
  }

  // A recurring meeting's occurrences are keyed "ical:UID/<original start, UTC>"
  // (connectors/base.py meeting_key; a meeting's thread_key is its key): the
  // series is the part before the recurrence id. Single events have none.
  const OCCURRENCE = /^(ical:.+)\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
  function seriesKey(it) {
    const m = it.kind === "meeting" && OCCURRENCE.exec(it.thread_key || "");
    return m ? m[1] : null;
  }
  function groupSeries(items) {
    const groups = [], byKey = new Map();
    for (const it of items) {
      const key = seriesKey(it);
      if (key && byKey.has(key)) { byKey.get(key).push(it); continue; }
      const g = [it];
      groups.push(g);
      if (key) byKey.set(key, g);
    }
    return groups;
  }

  // Timeline items, newest first: a recurring meeting is shown once, at its latest
  // occurrence, which lists the earlier ones (also those that arrive on later pages).
  function appendItems(list, items) {
    for (const it of items) {
      const key = seriesKey(it);
      const shown = key && state.series.get(key);
      if (!shown) {
        const node = itemNode(it);
        list.append(node);
        if (key) state.series.set(key, { node, starts: [it.occurred_at] });
        continue;
      }
      shown.starts.push(it.occurred_at);
      let box = shown.node.querySelector("details.occurrences");
      if (!box) {
        box = el("details", { class: "occurrences" }, el("summary"), el("ul", { class: "plain" },
          el("li", { class: "meta", text: fmtDate(shown.starts[0], true) })));
        shown.node.append(box);
      }
      box.querySelector("ul").append(el("li", { class: "meta", text: fmtDate(it.occurred_at, true) }));
      const how = window.ThreadlineDates.cadence(shown.starts);
      box.querySelector("summary").textContent = shown.starts.length + " occurrences" + (how ? ", " + how : "");
    }
  }

  const KIND = { email: "Email", meeting: "Meeting", note: "Note", task: "Task" };

  function itemNode(it) {
    const kind = it.kind === "email" ? (it.direction === "in" ? "Email received" : "Email sent") : (KIND[it.kind] || it.kind);
    const li = el("li", { class: "item item-" + it.kind, dataset: { id: it.id, kind: it.kind } });
    const when = el("span", { class: "meta", text: fmtDate(it.occurred_at, true) });
    // The From names a colleague, but nothing shows they sent it: possibly forged.
    const unverified = it.unverified_sender ? el("span", { class: "chip unverified",
      title: "The sender claims to be from your organisation, but this was not confirmed", text: "Unverified sender" }) : null;
    li.append(el("div", { class: "row" }, el("span", { class: "kind", text: kind }), unverified, when));
    if (it.kind === "task") {
      const box = el("input", { type: "checkbox", checked: !!it.done_at, onchange: ev => setTaskDone(it, ev.target, li) });
      li.classList.toggle("done", !!it.done_at);
      li.append(el("label", { class: "inline" }, box, el("span", { class: "subject", text: it.subject || "(task)" })));
      li.append(el("p", { class: "meta due", text: it.due_at ? "Due " + fmtDate(it.due_at) : "No due date" }));
      if (it.body) li.append(el("p", { class: "body", text: it.body }));
    } else if (it.kind === "note") {
      li.append(el("p", { class: "body", text: it.body || it.snippet || "" }));
    } else {
      li.append(el("p", { class: "subject", text: it.subject || "(no subject)" }));
      if (it.snippet) li.append(el("p", { class: "snippet", text: it.snippet }));
      const who = [];
      if (it.sender) who.push("From " + (it.sender.name || it.sender.address));
      const sender = it.sender ? it.sender.address : null;
      const others = (it.colleagues || []).filter(k => k.address !== sender);
      if (others.length) who.push("with " + others.map(k => k.name || k.address).join(", "));
      if (it.location) who.push(it.location);
      // A mass mailing: the first 500 recipients of each field are on the timeline, the rest counted.
      if (it.recipients_not_kept > 0) who.push("and " + it.recipients_not_kept.toLocaleString() + " more recipients not listed");
      if (who.length) li.append(el("p", { class: "meta", text: who.join(" · ") }));
    }
    if (it.author && (it.kind === "note" || it.kind === "task")) li.append(el("p", { class: "meta", text: "by " + (it.author.name || it.author.email) }));
    return li;
  }

  function prependItem(it) {
    const list = document.getElementById("timeline");
    if (!list) return;
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(itemNode(it));
  }

  async function setTaskDone(it, box, li) {
    box.disabled = true;
    try {
      const updated = await api("PATCH", "/api/tasks/" + encodeURIComponent(it.id), { done: box.checked });
      it.done_at = updated.done_at;
      li.classList.toggle("done", !!updated.done_at);
      say(updated.done_at ? "Task done" : "Task reopened", "okay");
    } catch (e) {
      box.checked = !box.checked;
      say("Could not update the task: " + e.message, "error");
    } finally {
      box.disabled = false;
    }
  }

  // -- forms ---------------------------------------------------------------------------------
  function toggleForm(button, form) {
    const slot = document.getElementById("form-slot");
    const open = button.getAttribute("aria-expanded") === "true";
    main.querySelectorAll(".card .actions button[aria-expanded]").forEach(b => b.setAttribute("aria-expanded", "false"));
    clear(slot);
    if (open) return;
    button.setAttribute("aria-expanded", "true");
    slot.append(form);
    const first = form.querySelector("input, textarea, select");
    if (first) first.focus();
  }
  // Closing a form (Cancel, or saved) puts the keyboard back on the button that opened it.
  function closeForms() {
    const slot = document.getElementById("form-slot");
    const opener = main.querySelector(".card .actions button[aria-expanded=true]");
    if (slot) clear(slot);
    main.querySelectorAll(".card .actions button[aria-expanded]").forEach(b => b.setAttribute("aria-expanded", "false"));
    if (opener) opener.focus();
  }
  // A form is disabled while it is sent, which drops the keyboard focus to the page; when it
  // comes back (refused, unreachable) the focus returns to the field the rep was in, or the first.
  function submitting(form, busy) {
    if (busy) form.__focused = form.contains(document.activeElement) ? document.activeElement : null;
    form.querySelectorAll("button, input, textarea, select").forEach(n => { n.disabled = busy; });
    if (!busy && form.isConnected) {
      const back = form.__focused && form.__focused.matches("input, textarea, select") ? form.__focused
        : form.querySelector("input, textarea, select");
      if (back) back.focus();
    }
  }

  // Where an enriched value came from, as a tooltip: "From their signature, 3 Mar 2025" or "Typed".
  function source(c, key) {
    const p = (c.provenance || {})[key];
    if (!p) return null;
    if (p.source === "signature") return "From their signature" + (p.at ? ", " + fmtDate(p.at) : "");
    return "Typed" + (p.at ? ", " + fmtDate(p.at) : "");
  }

  function editForm(c) {
    const name = el("input", { name: "name", value: c.name || "", autocomplete: "off" });
    const title = el("input", { name: "title", value: c.title || "", autocomplete: "off" });
    const phone = el("input", { name: "phone", type: "tel", value: c.phone || "", autocomplete: "off" });
    const mobile = el("input", { name: "mobile", type: "tel", value: c.mobile || "", autocomplete: "off" });
    const website = el("input", { name: "website", value: c.website || "", autocomplete: "off" });
    const tags = el("input", { name: "tags", value: (c.tags || []).join(", "), autocomplete: "off" });
    const form = el("form", { class: "edit-form", "aria-label": "Edit contact", onsubmit: async ev => {
      ev.preventDefault();
      // Only what the person changed is sent: a field sent is marked as typed, and a
      // typed value is never replaced by a signature.
      const changes = { tags: tags.value.split(",").map(t => t.trim()).filter(Boolean) };
      if (name.value !== (c.name || "")) changes.name = name.value;
      for (const [key, input] of [["title", title], ["phone", phone], ["mobile", mobile], ["website", website]]) {
        if (input.value !== (c[key] || "")) changes[key] = input.value || null;
      }
      await patchContact(changes, "Contact saved", form);
    } },
    field("Name", name), field("Title", title), field("Phone", phone), field("Mobile", mobile), field("Website", website),
    field("Tags (comma separated)", tags),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Save" }),
      el("button", { type: "button", text: "Cancel", onclick: closeForms })));
    return form;
  }

  // The stage is saved where it is chosen, without drawing the card again: Chromium (and
  // Outlook's WebView2) fires "change" at every arrow key on a closed select, so a redraw
  // would drop the keyboard focus after the first step. Saves go one at a time, the last
  // choice last; a refusal puts back the stage last saved.
  function stageSaver(c) {
    let busy = false, wanted;
    return async ev => {
      const select = ev.target;
      wanted = select.value || null;
      if (busy) return;
      busy = true;
      try {
        let value;
        do {
          value = wanted;
          await api("PATCH", "/api/contacts/" + encodeURIComponent(c.id), { stage: value });
          c.stage = value;
        } while (wanted !== value);
        say("Stage saved", "okay");
      } catch (e) {
        if (select.isConnected) select.value = c.stage || "";
        say("Stage not saved: " + e.message, "error");
      } finally {
        busy = false;
      }
    };
  }

  async function patchContact(changes, done, form) {
    if (form) submitting(form, true);
    try {
      await api("PATCH", "/api/contacts/" + encodeURIComponent(state.contact.id), changes);
      say(done, "okay");
      await show(state.email);
      say(done, "okay");
      // The card is drawn anew: the keyboard goes back to the Edit button the form came from.
      const edit = form && [...main.querySelectorAll(".card .actions button")].find(b => b.textContent === "Edit");
      if (edit) edit.focus();
    } catch (e) {
      if (form) submitting(form, false);
      say("Not saved: " + e.message, "error");
    }
  }

  function noteForm(c) {
    const text = el("textarea", { name: "note", required: true, maxlength: 20000 });
    const form = el("form", { class: "note-form", "aria-label": "Add a note", onsubmit: async ev => {
      ev.preventDefault();
      if (!text.value.trim()) { say("The note is empty.", "error"); return; }
      submitting(form, true);
      try {
        const it = await api("POST", "/api/contacts/" + encodeURIComponent(c.id) + "/notes", { body: text.value });
        closeForms(); prependItem(it); say("Note added", "okay");
      } catch (e) { submitting(form, false); say("Note not saved: " + e.message, "error"); }
    } },
    field("Note (your colleagues see it)", text),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Add note" }),
      el("button", { type: "button", text: "Cancel", onclick: closeForms })));
    return form;
  }

  function taskForm(c) {
    const title = el("input", { name: "title", required: true, maxlength: 500, autocomplete: "off", value: "Follow up" + (c.name ? " with " + c.name : "") });
    const due = el("input", { name: "due", type: "date" });
    const inDays = new Date(Date.now() + 3 * 86400000);
    due.value = inDays.toISOString().slice(0, 10);
    const form = el("form", { class: "task-form", "aria-label": "Add a follow-up task", onsubmit: async ev => {
      ev.preventDefault();
      submitting(form, true);
      const dueAt = due.value ? new Date(due.value + "T09:00:00").toISOString() : null;
      try {
        const it = await api("POST", "/api/contacts/" + encodeURIComponent(c.id) + "/tasks", { title: title.value, due_at: dueAt });
        closeForms(); prependItem(it); say("Task created", "okay");
      } catch (e) { submitting(form, false); say("Task not saved: " + e.message, "error"); }
    } },
    field("Task", title), field("Due", due),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Create task" }),
      el("button", { type: "button", text: "Cancel", onclick: closeForms })));
    return form;
  }

  // Log this email / never log: actions on the mail and its sender. "Never log" deletes
  // stored mail, so it sits in a menu that first says how much, and asks again.
  function mailActions(email) {
    const row = el("div", { class: "actions mail-actions" });
    if (inOutlook && state.mail && state.mail.internetMessageId) {
      row.append(el("button", { type: "button", class: "log-email", text: "Log this email", onclick: logEmail }));
    }
    const consequence = el("p", { class: "consequence", text: "Counting the stored emails with " + email + "…" });
    const never = el("button", { type: "button", class: "danger never-log", disabled: true, text: "Never log " + email,
      onclick: async () => {
        never.disabled = true;
        try {
          await api("POST", "/api/never-log", { email, scope: "address" });
          say("Mail with " + email + " is no longer logged from your mailbox.", "okay");
          await show(email);
          say("Mail with " + email + " is no longer logged from your mailbox.", "okay");
        } catch (e) { never.disabled = false; say("Not saved: " + e.message, "error"); }
      } });
    const menu = el("details", { class: "menu more-actions" }, el("summary", { text: "More" }),
      el("div", { class: "menu-body" }, consequence, never));
    let counted = false;
    menu.addEventListener("toggle", async () => {
      if (!menu.open || counted) return;
      counted = true;
      try {
        const n = await api("GET", "/api/never-log?email=" + encodeURIComponent(email));
        const what = stored(n.emails, n.meetings, "email");
        consequence.textContent = what ? "Deletes the " + stored(n.emails, n.meetings, "stored email") + " with " + email +
          " that only your mailbox holds. " : "Nothing stored is deleted: no email with " + email + " is only in your mailbox. ";
        consequence.textContent += "Their future mail to and from you is not logged. Colleagues' copies stay.";
        never.textContent = what ? "Never log and delete " + what : "Never log " + email;
        never.disabled = false;
      } catch (e) {
        consequence.textContent = "Never log is not available for " + email + ": " + e.message;
      }
    });
    row.append(menu);
    return row;
  }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function stored(emails, meetings, emailWord) {
    return [emails ? plural(emails, emailWord) : null, meetings ? plural(meetings, "meeting") : null].filter(Boolean).join(" and ");
  }

  async function logEmail(ev) {
    const m = state.mail;
    const button = ev.currentTarget;
    button.disabled = true;
    try {
      const out = await api("POST", "/api/log-email", {
        internet_message_id: m.internetMessageId, subject: m.subject, from: m.from,
        to: m.to, cc: m.cc, date: m.date, conversation_id: m.conversationId || null,
      });
      if (!out.logged) { say("Not logged: " + (out.reason || "this email is not kept"), "error"); button.disabled = false; return; }
      const msg = out.created ? "Email logged to the timeline" : "This email was already on the timeline";
      await show(state.email);
      say(msg, "okay");
    } catch (e) { button.disabled = false; say("Not logged: " + e.message, "error"); }
  }

  // -- an unknown sender ----------------------------------------------------------------------
  // about: what the server knows around the address (GET /api/lookup's 404 body).
  function renderUnknown(email, about) {
    body.dataset.state = "unknown";
    state.contact = null;
    state.shownEmail = email;
    clear(main);
    about = about || {};
    const person = state.people.find(p => p.email === email) || { email, name: "" };
    const stages = (state.config && state.config.stages) || [];
    const name = el("input", { name: "name", value: person.name || about.name || "", autocomplete: "off" });
    const title = el("input", { name: "title", autocomplete: "off" });
    const phone = el("input", { name: "phone", type: "tel", autocomplete: "off" });
    const stage = el("select", { name: "stage" }, el("option", { value: "", text: "—" }), stages.map(s => el("option", { value: s, text: s, selected: s === "lead" })));
    const err = el("p", { class: "error", role: "alert" });
    const co = about.company;
    const form = el("form", { class: "add-contact", "aria-label": "Add as contact", onsubmit: async ev => {
      ev.preventDefault();
      submitting(form, true);
      try {
        await api("POST", "/api/contacts", { email, name: name.value, title: title.value || null, phone: phone.value || null, stage: stage.value || null });
        await show(email);
        say("Contact added", "okay");
      } catch (e) {
        submitting(form, false);
        if (e.status === 409) { show(email); return; }
        err.textContent = "Not added: " + e.message;
      }
    } },
    co ? el("p", { class: "muted" }, "Company: ", el("strong", { text: co.name }))
      : el("p", { class: "muted" }, "Company: from ", el("strong", { text: domainOf(email) })),
    field("Name", name), field("Title", title), field("Phone", phone), field("Lifecycle stage", stage), err,
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Add as contact" })));
    main.append(peopleSwitcher() || "",
      el("h1", { text: person.name || about.name || email }),
      el("p", { class: "muted" }, el("span", { class: "unknown-email", text: email }), " is not in Threadline yet."),
      co ? companyContext(co, about) : null,
      form, mailActions(email));
  }

  // An unknown sender at a company the team already works with: who knows it, and the latest.
  function companyContext(co, about) {
    const colleagues = about.colleagues || [];
    const last = about.last_interaction;
    const people = about.company_contacts || [];
    const names = colleagues.slice(0, 3).map(k => k.name || k.email).join(", ") + (colleagues.length > 3 ? ", …" : "");
    return el("section", { class: "company-context", "aria-labelledby": "h-company" },
      el("h2", { id: "h-company", text: "At " + co.name }),
      el("p", { class: "colleague-count" }, colleagues.length
        ? (colleagues.length === 1 ? "1 colleague works" : colleagues.length + " colleagues work") + " with " + co.name + ": " + names
        : "No colleague has worked with " + co.name + " yet."),
      last ? el("p", { class: "meta company-last" }, "Latest: ", el("span", { text: last.subject || KIND[last.kind] || last.kind }),
        " · " + ago(last.occurred_at)) : null,
      people.length ? el("ul", { class: "plain company-contacts", "aria-label": "Also at " + co.name }, people.map(p => el("li", {},
        el("button", { type: "button", class: "link", text: p.name || p.email, onclick: () => openPerson(p.email) }),
        p.title ? el("span", { class: "meta", text: " · " + p.title }) : null))) : null);
  }

  // -- finding someone (the standalone panel without ?email=) ------------------------------------
  const RECENT_KEY = "threadline.recent";
  function recentPeople() {
    try { return JSON.parse(localStorage.getItem(RECENT_KEY) || "[]").filter(p => p && typeof p.email === "string"); }
    catch (e) { return []; }
  }
  // The people this browser looked at last (names and addresses only), newest first.
  function rememberPerson(c) {
    if (inOutlook) return;
    const entry = { email: c.email, name: c.name || "", company: c.company ? c.company.name : "" };
    const list = [entry].concat(recentPeople().filter(p => p.email !== c.email)).slice(0, 8);
    try { localStorage.setItem(RECENT_KEY, JSON.stringify(list)); } catch (e) { /* private mode */ }
  }
  function openFound(email) {
    history.replaceState(null, "", "/panel?email=" + encodeURIComponent(email));
    state.people = [{ email, name: "" }];
    show(email);
  }
  function personList(label, cls, people) {
    return el("ul", { class: "plain " + cls, "aria-label": label }, people.map(p => el("li", {},
      el("button", { type: "button", class: "link", text: p.name || p.email, onclick: () => openFound(p.email) }),
      el("span", { class: "meta", text: " · " + [p.name ? p.email : null, p.company].filter(Boolean).join(" · ") }))));
  }

  // -- the rep's day (/home, and the top of the pane when no email is selected) -------------
  function dayView(full) {
    const box = el("section", { class: "day" + (full ? " full" : ""), "aria-labelledby": "h-day" },
      el("h2", { id: "h-day", text: "Your day" }), el("p", { class: "muted", text: "Loading…" }));
    function render(d) {
      clear(box);
      box.append(el("h2", { id: "h-day", text: "Your day" }));
      const fus = el("ul", { class: "plain followups", "aria-label": "Follow-ups due" }, d.followups.map(f => {
        const act = (path, body, done) => async ev => {
          // The list is drawn anew without this follow-up: the keyboard goes on to the same
          // button of the one that takes its place (or the last), not back to the top of the page.
          const li = ev.currentTarget.closest("li"), label = ev.currentTarget.textContent;
          const at = [...li.parentNode.children].indexOf(li);
          try { await api("POST", "/api/followups/" + f.id + path, body); say(done, "okay"); await load(); }
          catch (e) { say("Could not change it: " + e.message, "error"); return; }
          const items = box.querySelectorAll(".followups > li");
          const next = items[Math.min(at, items.length - 1)];
          const target = next ? [...next.querySelectorAll("button")].find(b => b.textContent === label) : box.querySelector("h3");
          if (target) target.focus();
        };
        return el("li", { "data-followup": f.id },
          el("span", { class: "kind", text: f.label + (f.overdue ? " · overdue" : "") }), " ",
          el("button", { type: "button", class: "link", text: (f.who || f.address || "") + (f.subject ? " — " + f.subject : ""),
            onclick: () => f.address ? openFound(f.address) : null }),
          el("span", { class: "actions" },
            el("button", { type: "button", text: "Snooze 1 day", onclick: act("/snooze", { span: "1d" }, "Snoozed for a day.") }),
            el("button", { type: "button", text: "Snooze 1 week", onclick: act("/snooze", { span: "1w" }, "Snoozed for a week.") }),
            el("button", { type: "button", text: "Done", onclick: act("/done", undefined, "Done.") })));
      }));
      box.append(el("h3", { text: "Follow-ups", tabindex: "-1" }), d.followups.length ? fus : el("p", { class: "muted", text: "Nothing to chase today." }));
      const list = (title, items, render) => { if (full || items.length) box.append(el("h3", { text: title }),
        items.length ? el("ul", { class: "plain" }, items.map(render)) : el("p", { class: "muted", text: "None." })); };
      list("Tasks due", d.tasks, t => el("li", {}, el("span", { text: t.title }), el("span", { class: "meta", text: " · " + (t.who || "") + " · " + fmtDate(t.due_at) })));
      const meeting = m => el("li", {}, el("span", { text: fmtDate(m.starts_at, true) + " " + m.subject }),
        el("ul", { class: "plain attendees" }, m.attendees.map(a => el("li", { class: "meta", text: a.name + " · last " + (a.last_interaction_at ? ago(a.last_interaction_at) : "never") }))));
      list("Meetings today", d.meetings_today, meeting);
      list("Meetings tomorrow", d.meetings_tomorrow, meeting);
      list("Deals needing attention", d.deals, x => el("li", {}, el("span", { text: x.name }), el("span", { class: "meta", text: " · " + x.reason })));
      if (full) box.append(digestChoice(d));
    }
    // None, or the day by email every morning at an hour of the rep's own time zone.
    function digestChoice(d) {
      const hours = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, "0") + ":00");
      const pick = el("select", { id: "digest-hour", name: "digest_hour" },
        el("option", { value: "", text: "None" }),
        ...hours.map((t, h) => el("option", { value: String(h), text: "Daily at " + t + " (" + d.timezone + ")" })));
      pick.value = d.digest_hour === null ? "" : String(d.digest_hour);
      pick.addEventListener("change", async () => {
        const on = pick.value !== "";
        try {
          await api("PATCH", "/api/me/calendar", on ? { digest_enabled: true, digest_hour: Number(pick.value) } : { digest_enabled: false });
          say(on ? "Your day will be emailed daily at " + hours[Number(pick.value)] + "." : "No digest email.", "ok");
        } catch (e) { say("Not saved: " + e.message, "error"); }
      });
      return el("p", { class: "digest" }, el("label", { for: "digest-hour", text: "Digest email " }), pick);
    }
    async function load() {
      try { render(await api("GET", "/api/me/day")); }
      catch (e) {
        if (e.status === 401) { storeToken(null); showSignIn(e.message); return; }
        clear(box); box.append(el("p", { class: "error", text: "Could not load your day: " + e.message }));
      }
    }
    load();
    return box;
  }

  function showSearch() {
    state.seq++;
    body.dataset.state = "empty";
    clear(main);
    const input = el("input", { type: "search", name: "q", autocomplete: "off", spellcheck: "false", maxlength: 320 });
    const found = el("div", { class: "search-results", "aria-live": "polite" });
    let timer = null, asked = 0;
    async function search() {
      const q = input.value.trim();
      const mine = ++asked;
      clear(found);
      if (q.length < 2) return;
      try {
        const hits = await api("GET", "/api/contacts?q=" + encodeURIComponent(q) + "&limit=10");
        if (mine !== asked) return;
        found.append(hits.length ? personList("Contacts found", "hits", hits)
          : el("p", { class: "muted", text: q.includes("@") ? "No contact has this address: press Enter to look it up." : "No contact found." }));
      } catch (e) {
        if (e.status === 401) { storeToken(null); showSignIn(e.message); return; }
        found.append(el("p", { class: "error", text: "Could not search: " + e.message }));
      }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
    const recent = recentPeople();
    main.append(el("h1", { text: "Threadline" }), el("form", { role: "search", onsubmit: ev => {
      ev.preventDefault();
      const q = input.value.trim().toLowerCase();
      if (q.includes("@")) { openFound(q); return; }
      const first = found.querySelector("button");
      if (first) first.click(); else search();
    } }, field("Find a contact by name or email", input),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Find" }))),
    found,
    recent.length ? el("section", { "aria-labelledby": "h-recent" }, el("h2", { id: "h-recent", text: "Recently viewed" }),
      personList("Recently viewed", "recent", recent)) : null);
    input.focus();
  }

  // -- start --------------------------------------------------------------------------------------
  function start() {
    config();
    if (inOutlook) { onItemChanged(); return; }
    // A sign-in link (#token=..., tokenlink.js): someone else's sign-in is asked about first.
    if (window.ThreadlineTokenLink && window.ThreadlineTokenLink.offered()) {
      window.ThreadlineTokenLink.take(storedToken(), storeToken).then(start);
      return;
    }
    const params = new URLSearchParams(location.search);
    if (/^\/home\/?$/.test(location.pathname)) {
      if (!(state.token || storedToken())) { showSignIn(""); return; }
      body.classList.add("full");
      clear(main);
      main.append(el("h1", { text: "Threadline" }), dayView(true));
      return;
    }
    const match = /^\/panel\/contact\/(\d+)\/?$/.exec(location.pathname);
    if (match || params.get("full") === "1") body.classList.add("full");
    if (match) {
      api("GET", "/api/contacts/" + match[1]).then(c => { state.people = [{ email: c.email, name: c.name }]; show(c.email); })
        .catch(e => {
          if (e.status === 401) { storeToken(null); showSignIn(e.message); return; }
          body.dataset.state = "error"; clear(main); main.append(el("p", { class: "error", role: "alert", text: e.message }));
        });
      return;
    }
    const email = (params.get("email") || "").trim();
    if (!email) {
      if (!(state.token || storedToken())) { showSignIn(""); return; }
      showSearch();
      return;
    }
    state.people = [{ email: email.toLowerCase(), name: "" }];
    if (!(state.token || storedToken())) { showSignIn(""); return; }
    show(email.toLowerCase());
  }

  if (inOutlook && !window.Office) {
    body.dataset.state = "error";
    clear(main);
    main.append(el("p", { class: "error", role: "alert", text: "Office.js could not be loaded: check the connection to appsforoffice.microsoft.com." }));
  } else if (inOutlook) {
    Office.onReady(() => {
      applyOfficeTheme();
      const mbx = Office.context.mailbox;
      mbx.addHandlerAsync(Office.EventType.ItemChanged, onItemChanged);
      if (Office.EventType.OfficeThemeChanged) {
        try { mbx.addHandlerAsync(Office.EventType.OfficeThemeChanged, ev => applyOfficeTheme(ev.officeTheme), () => {}); } catch (e) { /* Mailbox < 1.14 */ }
      }
      start();
    });
  } else {
    start();
  }
})();
