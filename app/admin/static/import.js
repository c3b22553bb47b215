// The import page: the chosen file stays chosen while the admin previews, maps columns, runs a
// dry run and imports. Everything from the file is put on the page as text (textContent), never markup.
(function () {
  "use strict";
  const form = document.getElementById("import");
  if (!form) return;
  const status = document.getElementById("status");
  const notes = document.getElementById("notes");
  const mapping = document.getElementById("mapping");
  const previewTable = document.getElementById("preview-rows");
  const errorsTable = document.getElementById("row-errors");
  let lastAction = "preview";

  function cell(row, text, tag) {
    const td = document.createElement(tag || "td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function showMapping(headers, used) {
    const entity = document.getElementById("entity").value;
    mapping.hidden = headers.length === 0;
    for (const label of mapping.querySelectorAll("label.map")) {
      label.hidden = label.dataset.entity !== entity;
      const select = label.querySelector("select");
      select.disabled = label.hidden;
      clear(select);
      const none = document.createElement("option");
      none.value = ""; none.textContent = "—";
      select.appendChild(none);
      for (const h of headers) {
        const o = document.createElement("option");
        o.value = h; o.textContent = h;
        if (used[select.dataset.field] === h) o.selected = true;
        select.appendChild(o);
      }
    }
  }

  function showNotes(list) {
    clear(notes);
    for (const n of list || []) { const li = document.createElement("li"); li.textContent = n; notes.appendChild(li); }
  }

  function showPreview(data) {
    showMapping(data.headers, data.mapping);
    const fields = Object.keys(data.mapping);
    const head = previewTable.querySelector("thead tr");
    const body = previewTable.querySelector("tbody");
    clear(head); clear(body);
    cell(head, "Row", "th");
    for (const f of fields) cell(head, f, "th");
    cell(head, "Problem", "th");
    for (const r of data.rows) {
      const tr = document.createElement("tr");
      tr.className = r.error ? "row error" : "row";
      cell(tr, r.row);
      for (const f of fields) cell(tr, r.values[f]);
      cell(tr, r.error ? r.error.reason : (r.notes || []).join("; "));
      body.appendChild(tr);
    }
    previewTable.hidden = false;
    errorsTable.hidden = true;
    status.textContent = "Read as " + data.encoding + (data.delimiter ? ", separated by " + JSON.stringify(data.delimiter) : "") +
      ": the first " + data.rows.length + " rows. Check the columns, then run a dry run.";
  }

  function showResult(data) {
    const body = errorsTable.querySelector("tbody");
    clear(body);
    for (const e of data.errors) {
      const tr = document.createElement("tr");
      tr.className = "row-error";
      cell(tr, e.row); cell(tr, e.field || ""); cell(tr, e.reason);
      body.appendChild(tr);
    }
    errorsTable.hidden = data.errors.length === 0;
    const verb = data.written ? "Imported" : (data.dry_run ? "Dry run, nothing written" : "Nothing written");
    status.textContent = verb + ": " + data.rows + " rows, " + data.created + " new, " + data.updated + " updated, " +
      data.unchanged + " unchanged, " + data.error_count + " in error.";
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    lastAction = (ev.submitter && ev.submitter.value) || "preview";
    const body = new FormData(form);
    body.set("action", lastAction);
    const map = {};
    for (const select of mapping.querySelectorAll("select")) {
      body.delete(select.name);
      if (!select.disabled && select.value) map[select.dataset.field] = select.value;
    }
    body.set("map", JSON.stringify(map));
    status.textContent = "Working…";
    let resp;
    try {
      // form.action would be the button named "action" (named form controls shadow form properties)
      resp = await fetch(form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" });
    } catch (e) {
      status.textContent = "The server could not be reached: nothing was imported.";
      return;
    }
    const data = await resp.json();
    if (!resp.ok) {
      status.textContent = data.detail || "refused";
      showNotes([]);
      return;
    }
    showNotes((data.preview || data.result).notes);
    if (data.action === "preview") showPreview(data.preview); else showResult(data.result);
  });
  document.getElementById("file").addEventListener("change", function () {
    for (const s of mapping.querySelectorAll("select")) clear(s);
    mapping.hidden = true;
  });
})();
