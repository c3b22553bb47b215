/* Threadline sidebar: the deal section under a contact's card.

   Shows the deals on the email being read (its thread linked) and the person's open
   deals; stage, amount and close date change in place (a select, a field: one or two
   clicks, saved at once). "New deal" opens a form prefilled from the email: a name from
   the subject, the company, the known people on the thread, and the thread itself
   linked, so later replies show on the deal. panel.js calls
   window.ThreadlineDeals.section(ctx) with its helpers; everything from the API or the
   email goes on the page as text (ctx.el sets textContent). */
(function () {
  "use strict";
  const ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(" ");
  const THREE = "BHD IQD JOD KWD LYD OMR TND".split(" ");
  const CURRENCIES = ["EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CAD", "AUD", "JPY"];
  function digits(cur) { return ZERO.includes(cur) ? 0 : THREE.includes(cur) ? 3 : 2; }

  // "12,500.50" -> 1250050 minor units of a two-digit currency; null when it is no amount.
  function toMinor(text, cur) {
    const clean = String(text || "").replace(/[\s,'\u00a0]/g, "");
    if (!/^\d+(\.\d+)?$/.test(clean)) return null;
    const [whole, frac = ""] = clean.split(".");
    const n = digits(cur);
    if (frac.length > n) return null;
    return Number(whole) * Math.pow(10, n) + Number((frac + "000").slice(0, n) || 0);
  }
  function fromMinor(minor, cur) {
    const n = digits(cur);
    return n ? (minor / Math.pow(10, n)).toFixed(n) : String(minor);
  }

  function section(ctx) {
    const { api, el, field, say } = ctx;
    const c = ctx.contact;
    const mail = ctx.mail;
    const list = el("ul", { class: "plain deals-list", "aria-label": "Deals" });
    const slot = el("div", { class: "deal-form-slot" });
    const newButton = el("button", { type: "button", class: "new-deal", text: "New deal", "aria-expanded": "false" });
    const root = el("section", { class: "deals", "aria-labelledby": "h-deals" },
      el("h2", { id: "h-deals", text: "Deals" }), list, el("div", { class: "actions" }, newButton), slot);
    let pre = null;

    function stageSelect(d, pipelines) {
      const p = pipelines.find(x => x.id === d.pipeline_id) || { stages: [] };
      const select = el("select", { name: "stage", class: "deal-stage" },
        p.stages.map(s => el("option", { value: s.id, text: s.name + (s.kind === "open" ? " · " + s.probability + "%" : ""),
          selected: s.id === d.stage.id, dataset: { kind: s.kind } })));
      return select;
    }

    function dealRow(d, pipelines) {
      const stage = stageSelect(d, pipelines);
      const amount = el("input", { name: "amount", inputmode: "decimal", class: "deal-amount", value: fromMinor(d.amount_minor, d.currency), autocomplete: "off" });
      const close = el("input", { name: "close_date", type: "date", class: "deal-close", value: d.close_date || "" });
      const reasonSlot = el("div", { class: "reason-slot" });
      const row = el("li", { class: "deal", dataset: { dealId: d.id } },
        el("p", { class: "deal-name" }, el("strong", { text: d.name }), el("span", { class: "meta", text: " · " + d.amount })),
        el("div", { class: "deal-edit" }, el("div", { class: "stage-f" }, ...field("Stage", stage)),
          el("div", {}, ...field("Amount (" + d.currency + ")", amount)), el("div", {}, ...field("Close date", close))),
        reasonSlot);
      async function save(changes, what) {
        try {
          const fresh = await api("PATCH", "/api/deals/" + encodeURIComponent(d.id), changes);
          Object.assign(d, fresh);
          row.querySelector(".deal-name .meta").textContent = " · " + fresh.amount;
          say(what + " saved", "okay");
          return true;
        } catch (e) { say("Not saved: " + e.message, "error"); return false; }
      }
      stage.addEventListener("change", async () => {
        const opt = stage.selectedOptions[0];
        reasonSlot.replaceChildren();
        if (opt.dataset.kind === "lost") {
          const reason = el("input", { name: "lost_reason", class: "lost-reason", maxlength: 500, autocomplete: "off" });
          const form = el("form", { class: "lost-form" }, ...field("Why was it lost?", reason),
            el("button", { type: "submit", class: "primary", text: "Mark lost" }));
          form.addEventListener("submit", async ev => {
            ev.preventDefault();
            if (!reason.value.trim()) { reason.focus(); return; }
            if (await save({ stage_id: Number(stage.value), lost_reason: reason.value }, "Stage")) reasonSlot.replaceChildren();
          });
          reasonSlot.append(form);
          reason.focus();
          return;
        }
        if (!(await save({ stage_id: Number(stage.value) }, "Stage"))) stage.value = d.stage.id;
      });
      amount.addEventListener("change", async () => {
        const minor = toMinor(amount.value, d.currency);
        if (minor === null) { say("Not saved: the amount is a number such as 12500.00", "error"); return; }
        await save({ amount_minor: minor }, "Amount");
      });
      close.addEventListener("change", () => save({ close_date: close.value || null }, "Close date"));
      return row;
    }

    function newDealForm() {
      const p = pre || { name: "", contacts: [], company: null, thread_key: null, pipelines: [] };
      const pipes = p.pipelines || [];
      const name = el("input", { name: "name", class: "deal-name-input", value: p.name || "", maxlength: 200, required: true, autocomplete: "off" });
      const stages = pipes.length ? pipes[0].stages.filter(s => s.kind === "open") : [];
      const stage = el("select", { name: "stage" }, stages.map(s => el("option", { value: s.id, text: s.name })));
      const amount = el("input", { name: "amount", inputmode: "decimal", autocomplete: "off", placeholder: "0.00" });
      const currency = el("select", { name: "currency" }, CURRENCIES.map(x => el("option", { value: x, text: x })));
      const close = el("input", { name: "close_date", type: "date" });
      const people = el("fieldset", { class: "deal-people" }, el("legend", { text: "People" }),
        (p.contacts.length ? p.contacts : [{ id: c.id, name: c.name, email: c.email }]).map(x => {
          const box = el("input", { type: "checkbox", name: "contact", value: x.id, checked: true });
          return el("label", { class: "check" }, box, " ", x.name || x.email);
        }));
      const err = el("p", { class: "error", role: "alert" });
      const form = el("form", { class: "new-deal-form", "aria-label": "New deal" },
        ...field("Deal name", name), ...field("Stage", stage), ...field("Amount", amount), ...field("Currency", currency),
        ...field("Expected close", close), people,
        p.company ? el("p", { class: "muted" }, "Company: ", el("strong", { text: p.company.name })) : null,
        p.thread_key ? el("p", { class: "muted thread-linked", text: "This email's thread is linked: later replies show on the deal." }) : null,
        err,
        el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Create deal" }),
          el("button", { type: "button", text: "Cancel", onclick: () => { slot.replaceChildren(); newButton.setAttribute("aria-expanded", "false"); } })));
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        const minor = amount.value.trim() ? toMinor(amount.value, currency.value) : 0;
        if (minor === null) { err.textContent = "The amount is a number such as 12500.00"; amount.focus(); return; }
        const body = {
          name: name.value, amount_minor: minor, currency: currency.value, close_date: close.value || null,
          stage_id: stage.value ? Number(stage.value) : null, pipeline_id: pipes.length ? pipes[0].id : null,
          contact_ids: [...people.querySelectorAll("input:checked")].map(b => Number(b.value)),
          company_id: p.company ? p.company.id : null,
        };
        if (mail && mail.internetMessageId) body.message_id = mail.internetMessageId;
        form.querySelectorAll("button, input, select").forEach(n => { n.disabled = true; });
        try {
          await api("POST", "/api/deals", body);
          slot.replaceChildren();
          newButton.setAttribute("aria-expanded", "false");
          say("Deal created", "okay");
          await load();
        } catch (e) {
          form.querySelectorAll("button, input, select").forEach(n => { n.disabled = false; });
          err.textContent = "Not created: " + e.message;
        }
      });
      return form;
    }

    newButton.addEventListener("click", () => {
      if (slot.firstChild) { slot.replaceChildren(); newButton.setAttribute("aria-expanded", "false"); return; }
      slot.replaceChildren(newDealForm());
      newButton.setAttribute("aria-expanded", "true");
      slot.querySelector("input").focus();
    });

    async function load() {
      const q = new URLSearchParams();
      if (mail && mail.internetMessageId) q.set("message_id", mail.internetMessageId);
      if (mail && mail.subject) q.set("subject", mail.subject);
      const emails = mail && mail.people && mail.people.length ? mail.people.map(x => x.email) : [c.email];
      emails.forEach(e => q.append("email", e));
      try {
        const [prefill, theirs] = await Promise.all([
          api("GET", "/api/deal-prefill?" + q.toString()),
          api("GET", "/api/deals?contact_id=" + encodeURIComponent(c.id)),
        ]);
        pre = prefill;
        if (!mail) pre.name = pre.name || (c.company ? c.company.name : c.name || "");
        const seen = new Set();
        const shown = [...prefill.deals, ...theirs].filter(d => !seen.has(d.id) && seen.add(d.id));
        list.replaceChildren(...(shown.length ? shown.map(d => dealRow(d, prefill.pipelines))
          : [el("li", { class: "muted", text: "No open deal with them yet." })]));
        root.dataset.loaded = "1";
        if (!prefill.pipelines.length) newButton.disabled = true;
      } catch (e) {
        list.replaceChildren(el("li", { class: "muted", text: "Deals are not available: " + e.message }));
      }
    }
    load();
    return root;
  }

  window.ThreadlineDeals = { section, toMinor };
})();
