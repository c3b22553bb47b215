/* Threadline reports (/reports): each section is one report with its own filters (date range,
   rep, and the report's own choices), a chart view and a table view, and a CSV download per table.

   The charts are SVG drawn by the server (GET /api/reports/<name>.svg), parsed as XML and kept
   only if every element and attribute is one a chart uses (no scripts, no links, no handlers):
   the server escapes every label already, this is the second lock. Tables are built from the
   JSON with textContent, never markup. The token is the one the standalone panel keeps
   (localStorage "threadline.token"). */
(function () {
  "use strict";
  const TOKEN_KEY = "threadline.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SVG_TAGS = new Set(["svg", "g", "rect", "line", "text", "title", "desc", "tspan"]);
  const statusBox = document.getElementById("status");
  const EXTRA = {
    "cold-accounts": [{ name: "sort", label: "Order", options: [["strength", "Strongest first"], ["quiet", "Quiet longest"], ["name", "By name"]] }],
    pipeline: [{ name: "pipeline", label: "Pipeline", options: [] }],
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  // Bidirectional controls from mail shown, not obeyed (as the panel does: app/web/panel.js).
  function shown(v) {
    return String(v === null || v === undefined ? "" : v)
      .replace(/[\u200e\u200f\u061c]/g, "")
      .replace(/[\u202a-\u202e\u2066-\u2069]/g, (c) => "[U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "]");
  }
  function say(text, kind) { statusBox.textContent = text || ""; statusBox.className = "status" + (kind ? " " + kind : ""); }
  function token() { try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }

  async function get(path, as) {
    const t = token();
    if (!t) { const e = new Error("Sign in first: open the panel (/panel) and paste your access token."); e.status = 401; throw e; }
    const r = await fetch(path, { cache: "no-store", headers: { Authorization: "Bearer " + t } });
    if (!r.ok) {
      let detail = "HTTP " + r.status;
      try { const d = await r.json(); if (d && typeof d.detail === "string") detail = d.detail; } catch (e) { /* not JSON */ }
      const e = new Error(detail); e.status = r.status; throw e;
    }
    return as === "json" ? r.json() : as === "blob" ? r.blob() : r.text();
  }

  // The server's SVG, parsed as XML and rebuilt from allowed parts only.
  function safeSvg(text) {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = doc.documentElement;
    if (!root || root.namespaceURI !== SVG_NS || root.localName !== "svg") throw new Error("the chart could not be read");
    function copy(node) {
      if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
      if (node.nodeType !== Node.ELEMENT_NODE || node.namespaceURI !== SVG_NS || !SVG_TAGS.has(node.localName)) return null;
      const out = document.createElementNS(SVG_NS, node.localName);
      for (const a of Array.from(node.attributes)) {
        const name = a.name.toLowerCase();
        if (name.startsWith("on") || name.includes("href") || name === "style" || a.namespaceURI) continue;
        out.setAttribute(a.name, a.value);
      }
      for (const c of Array.from(node.childNodes)) { const k = copy(c); if (k) out.append(k); }
      return out;
    }
    return copy(root);
  }

  function isNum(kind) { return kind === "int" || kind === "number"; }
  function cell(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "number" ? String(Math.round(v * 100) / 100) : shown(v);
  }

  function tableNode(t) {
    const head = el("tr", {}, ...t.columns.map((c) => el("th", { scope: "col", class: isNum(c.kind) ? "num" : null, text: c.label })));
    const body = t.rows.map((row) => el("tr", {}, ...row.map((v, i) =>
      i === 0 ? el("th", { scope: "row", text: cell(v) }) : el("td", { class: isNum(t.columns[i].kind) ? "num" : null, text: cell(v) }))));
    return el("table", { "data-table": t.key }, el("caption", { text: t.title }), el("thead", {}, head), el("tbody", {}, ...body));
  }

  function setupSection(section) {
    const name = section.dataset.report;
    const uid = "f-" + name;
    const form = el("form", { class: "filters", "aria-label": "Filters of " + section.querySelector("h2").textContent });
    const start = el("input", { type: "date", name: "start", id: uid + "-start" });
    const end = el("input", { type: "date", name: "end", id: uid + "-end" });
    const rep = el("select", { name: "rep", id: uid + "-rep" });
    const field = (text, control) => el("div", { class: "field" }, el("label", { for: control.id, text }), control);
    form.append(field("From", start), field("To", end), field("Rep", rep));
    const extras = {};
    for (const x of EXTRA[name] || []) {
      const sel = el("select", { name: x.name, id: uid + "-" + x.name }, ...x.options.map(([v, l]) => el("option", { value: v, text: l })));
      extras[x.name] = sel;
      form.append(field(x.label, sel));
    }
    const chartBtn = el("button", { type: "button", "aria-pressed": "true", "data-view": "chart", text: "Chart" });
    const tableBtn = el("button", { type: "button", "aria-pressed": "false", "data-view": "table", text: "Table" });
    const csvBox = el("span", { class: "csv" });
    const bar = el("div", { class: "bar" }, el("span", { class: "views", role: "group", "aria-label": "Show as" }, chartBtn, tableBtn), csvBox);
    const charts = el("div", { class: "charts" });
    const tables = el("div", { class: "tables", hidden: true });
    const notes = el("ul", { class: "notes" });
    section.append(form, bar, charts, tables, notes);
    const state = { loaded: false, data: null };

    function query(extra) {
      const q = new URLSearchParams();
      if (start.value) q.set("start", start.value);
      if (end.value) q.set("end", end.value);
      if (rep.value) q.set("rep", rep.value);
      for (const [k, sel] of Object.entries(extras)) if (sel.value) q.set(k, sel.value);
      for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
      return q.toString();
    }

    function fillFilters(data) {
      if (!start.value) start.value = data.start;
      if (!end.value) end.value = data.end;
      const chosen = data.rep_id === null ? "" : String(data.rep_id);
      rep.replaceChildren();
      if (data.reps.length !== 1 || data.rep_id === null) rep.append(el("option", { value: "", text: "Everyone" }));
      for (const r of data.reps) rep.append(el("option", { value: String(r.id), text: shown(r.name) }));
      rep.value = chosen;
      rep.disabled = data.reps.length === 1 && data.rep_id !== null;
      if (extras.pipeline && data.pipelines) {
        extras.pipeline.replaceChildren(...data.pipelines.map((p) => el("option", { value: String(p.id), text: shown(p.name) })));
        extras.pipeline.value = data.pipeline_id === null ? "" : String(data.pipeline_id);
        extras.pipeline.closest(".field").hidden = data.pipelines.length < 2;
      }
    }

    async function load() {
      section.dataset.state = "loading";
      try {
        const data = await get("/api/reports/" + name + "?" + query(), "json");
        fillFilters(data);
        const width = Math.max(280, Math.min(1400, Math.floor(charts.clientWidth || section.clientWidth - 28)));
        const svgs = await Promise.all(data.tables.map((t) => get("/api/reports/" + name + ".svg?" + query({ table: t.key, width: String(width) }), "text")));
        charts.replaceChildren(...data.tables.map((t, i) => {
          const svg = safeSvg(svgs[i]);
          // one chart: the section's heading says what it is; several: each says which it is
          return el("figure", { class: "chart-box", "data-table": t.key }, data.tables.length > 1 ? el("h3", { text: t.title }) : null, svg);
        }));
        tables.replaceChildren(...data.tables.map((t) => el("div", { class: "table-box" }, tableNode(t))));
        csvBox.replaceChildren(...data.tables.map((t) => {
          const b = el("button", { type: "button", class: "link", "data-csv": t.key, text: data.tables.length > 1 ? "CSV: " + t.title : "Download CSV" });
          b.addEventListener("click", () => download(t.key).catch((e) => say(e.message, "error")));
          return b;
        }));
        notes.replaceChildren(...data.notes.map((n) => el("li", { text: n })));
        state.data = data;
        section.dataset.state = "ready";
      } catch (e) {
        section.dataset.state = "error";
        charts.replaceChildren(el("p", { class: "error", role: "alert", text: e.message }));
        tables.replaceChildren();
      }
    }

    async function download(key) {
      const blob = await get("/api/reports/" + name + ".csv?" + query({ table: key }), "blob");
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: "threadline-" + name + "-" + key + ".csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    }

    function show(view) {
      chartBtn.setAttribute("aria-pressed", String(view === "chart"));
      tableBtn.setAttribute("aria-pressed", String(view === "table"));
      charts.hidden = view !== "chart";
      tables.hidden = view !== "table";
    }
    chartBtn.addEventListener("click", () => show("chart"));
    tableBtn.addEventListener("click", () => show("table"));
    form.addEventListener("change", () => load());
    form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
    return load;
  }

  async function start() {
    const loads = Array.from(document.querySelectorAll("section.report")).map(setupSection);
    try {
      const me = await get("/api/me", "json");
      document.getElementById("who").textContent = me.role === "rep"
        ? "Your own numbers, " + shown(me.name || me.email) + "."
        : "Everyone's numbers: pick a rep in a report to see theirs.";
    } catch (e) {
      say(e.message, "error");
      document.body.dataset.state = "error";
      return;
    }
    await Promise.all(loads.map((load) => load()));
    document.body.dataset.state = "ready";
  }
  start();
})();
