/* Threadline pipeline board (/board): a pipeline's open deals in columns by stage.

   A card moves to another stage by dragging it (HTML drag and drop) or from the
   keyboard: focus it, then ← / → (or Home / End) move it one stage (to the first or
   last). Moving to a lost stage asks why first. Every value from the API (deal names
   often come from email subjects) is put on the page with textContent, never markup.
   The token is the one the standalone panel keeps (localStorage "threadline.token"). */
(function () {
  "use strict";
  const TOKEN_KEY = "threadline.token";
  const boardEl = document.getElementById("board");
  const statusBox = document.getElementById("status");
  const picker = document.getElementById("pipeline");
  const lostDialog = document.getElementById("lost");
  const state = { columns: [], byId: new Map(), pipelineId: null };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function say(text, kind) { statusBox.textContent = text || ""; statusBox.className = "status" + (kind ? " " + kind : ""); }
  function token() { try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }
  function ago(v) { return window.ThreadlineDates ? window.ThreadlineDates.relativeDay(v) : (v || "never"); }

  async function api(method, path, payload) {
    const t = token();
    if (!t) { const e = new Error("Sign in first: open the panel (/panel) and paste your access token."); e.status = 401; throw e; }
    const init = { method, cache: "no-store", headers: { Accept: "application/json", Authorization: "Bearer " + t } };
    if (payload !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(payload); }
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const e = new Error(data && typeof data.detail === "string" ? data.detail : "HTTP " + r.status);
      e.status = r.status;
      throw e;
    }
    return data;
  }

  // -- rendering ------------------------------------------------------------------------------
  function cardNode(d) {
    const facts = el("dl", {},
      el("dt", { text: "In stage" }), el("dd", { class: "days", text: d.days_in_stage + (d.days_in_stage === 1 ? " day" : " days") }),
      el("dt", { text: "Last touch" }), el("dd", { class: "touch", text: d.last_touch_at ? ago(d.last_touch_at) : "never" }),
      el("dt", { text: "Next meeting" }), el("dd", { class: "meeting", text: d.next_meeting_at ? ago(d.next_meeting_at) : "none" }));
    const node = el("li", { class: "card", tabindex: "0", draggable: "true", dataset: { id: d.id },
      "aria-roledescription": "deal card", "aria-keyshortcuts": "ArrowLeft ArrowRight Home End" },
      el("p", { class: "name", text: d.name }),
      d.company ? el("p", { class: "company", text: d.company }) : null,
      el("p", { class: "amount", text: d.amount }),
      facts);
    node.setAttribute("aria-label", d.name + ", " + d.amount + (d.company ? ", " + d.company : ""));
    return node;
  }

  function totalsText(col) {
    if (col.stage.kind !== "open") return "";  // closed deals leave the board
    const n = col.list.children.length;
    return n + (n === 1 ? " deal" : " deals");
  }

  function render(data) {
    state.columns = [];
    state.byId = new Map();
    const frag = document.createDocumentFragment();
    data.columns.forEach((c, index) => {
      const list = el("ul", { class: "cards", "aria-labelledby": "col-" + c.id });
      const count = el("span", { class: "count" });
      const closed = c.kind !== "open";
      const col = { stage: c, index, list, count, node: null };
      const node = el("section", { class: "column" + (closed ? " closed" : ""), dataset: { stageId: c.id, kind: c.kind } },
        el("header", {},
          el("h2", { id: "col-" + c.id }, el("span", { class: "stage", text: c.name }), count),
          el("p", { class: "totals", text: closed ? "Drop here to close" : (c.probability + "% · " + (c.totals.join(" · ") || "nothing yet")) })),
        list);
      col.node = node;
      const cards = document.createDocumentFragment();
      for (const d of c.deals) { state.byId.set(String(d.id), { deal: d, col }); cards.append(cardNode(d)); }
      list.append(cards);
      count.textContent = totalsText(col);
      wireDrop(col);
      state.columns.push(col);
      frag.append(node);
    });
    boardEl.replaceChildren(frag);
    document.body.dataset.state = "ready";
  }

  // -- moving ------------------------------------------------------------------------------------
  function askLostReason(name) {
    return new Promise(resolve => {
      const input = document.getElementById("lost-reason");
      document.getElementById("lost-what").textContent = "Mark \u201c" + name + "\u201d lost.";
      input.value = "";
      const cancel = document.getElementById("lost-cancel");
      const done = value => { cancel.onclick = null; lostDialog.onclose = null; resolve(value); };
      cancel.onclick = () => { lostDialog.close(); done(null); };
      lostDialog.onclose = () => done(lostDialog.returnValue === "save" && input.value.trim() ? input.value.trim() : null);
      lostDialog.returnValue = "";
      lostDialog.showModal();
      input.focus();
    });
  }

  async function move(id, target) {
    const entry = state.byId.get(String(id));
    if (!entry || !target || target === entry.col) return;
    const card = entry.col.list.querySelector('[data-id="' + CSS.escape(String(id)) + '"]');
    const payload = { stage_id: target.stage.id };
    if (target.stage.kind === "lost") {
      const reason = await askLostReason(entry.deal.name);
      if (!reason) { if (card) card.focus(); return; }
      payload.lost_reason = reason;
    }
    const from = entry.col;
    if (card) card.classList.add("moving");
    try {
      await api("PATCH", "/api/deals/" + encodeURIComponent(id), payload);
    } catch (e) {
      if (card) { card.classList.remove("moving"); card.focus(); }
      say("Not moved: " + e.message, "error");
      return;
    }
    if (card) card.classList.remove("moving");
    entry.deal.days_in_stage = 0;
    if (target.stage.kind === "open") {
      const fresh = cardNode(entry.deal);
      if (card) card.remove();
      target.list.prepend(fresh);
      entry.col = target;
      fresh.focus();
    } else {
      // a won or lost deal leaves the board; focus stays nearby
      const next = card && (card.nextElementSibling || card.previousElementSibling);
      if (card) card.remove();
      state.byId.delete(String(id));
      if (next) next.focus();
    }
    from.count.textContent = totalsText(from);
    target.count.textContent = totalsText(target);
    say("\u201c" + entry.deal.name + "\u201d moved to " + target.stage.name, "okay");
  }

  function wireDrop(col) {
    col.node.addEventListener("dragover", ev => { ev.preventDefault(); ev.dataTransfer.dropEffect = "move"; col.node.classList.add("over"); });
    col.node.addEventListener("dragleave", ev => { if (!col.node.contains(ev.relatedTarget)) col.node.classList.remove("over"); });
    col.node.addEventListener("drop", ev => {
      ev.preventDefault();
      col.node.classList.remove("over");
      const id = ev.dataTransfer.getData("text/plain");
      if (id) move(id, col);
    });
  }

  boardEl.addEventListener("dragstart", ev => {
    const card = ev.target.closest && ev.target.closest(".card");
    if (!card) return;
    ev.dataTransfer.setData("text/plain", card.dataset.id);
    ev.dataTransfer.effectAllowed = "move";
  });

  boardEl.addEventListener("keydown", ev => {
    const card = ev.target.closest && ev.target.closest(".card");
    if (!card) return;
    const entry = state.byId.get(card.dataset.id);
    if (!entry) return;
    const i = entry.col.index, last = state.columns.length - 1;
    const to = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: last }[ev.key];
    if (to !== undefined) {
      ev.preventDefault();
      if (to >= 0 && to <= last && to !== i) move(card.dataset.id, state.columns[to]);
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const sib = ev.key === "ArrowDown" ? card.nextElementSibling : card.previousElementSibling;
      if (sib) sib.focus();
    }
  });

  // -- loading -----------------------------------------------------------------------------------
  async function load(pipelineId) {
    const started = performance.now();
    try {
      const data = await api("GET", "/api/board" + (pipelineId ? "?pipeline_id=" + encodeURIComponent(pipelineId) : ""));
      const fetched = performance.now();
      state.pipelineId = data.pipeline.id;
      document.getElementById("title").textContent = data.pipeline.name;
      render(data);
      // Rendered: the bench (bench/board.py) reads this mark, set in the next frame, with how
      // long the API call and building the page (DOM, style, layout) took.
      requestAnimationFrame(() => performance.mark("board:rendered", {
        detail: { fetch: fetched - started, render: performance.now() - fetched } }));
    } catch (e) {
      document.body.dataset.state = e.status === 401 ? "signin" : "error";
      boardEl.replaceChildren(el("p", { class: "muted", text: e.message }));
    }
  }

  async function start() {
    // A sign-in link (#token=..., tokenlink.js): someone else's sign-in is asked about first.
    await window.ThreadlineTokenLink.take(token(), t => {
      try { localStorage.setItem(TOKEN_KEY, t); } catch (e) { /* private mode */ }
    });
    await load(new URLSearchParams(location.search).get("pipeline"));
    try {
      const pipes = await api("GET", "/api/pipelines");
      if (pipes.length > 1) {
        picker.replaceChildren(...pipes.map(p => el("option", { value: p.id, text: p.name, selected: p.id === state.pipelineId })));
        picker.hidden = false;
        picker.addEventListener("change", () => load(picker.value));
      }
    } catch (e) { /* the board already said what went wrong */ }
  }
  start();
})();
