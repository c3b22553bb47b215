/* Threadline console: its one script (the CSP allows scripts from this origin only).
   Every page works without it; it only makes two things nicer:
   - menus (<details class="menu">): one open at a time, closed by Escape or a click elsewhere;
   - the add-mailbox form's provider list fills in server, port and security (the list
     is shown only once this has run, since it does nothing without it). */
(function () {
  "use strict";
  const menus = () => document.querySelectorAll("details.menu[open]");
  document.addEventListener("toggle", function (ev) {
    const opened = ev.target;
    if (!opened.matches || !opened.matches("details.menu") || !opened.open) return;
    menus().forEach(function (m) { if (m !== opened) m.open = false; });
  }, true);
  document.addEventListener("click", function (ev) {
    menus().forEach(function (m) { if (!m.contains(ev.target)) m.open = false; });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    menus().forEach(function (m) { m.open = false; m.querySelector("summary").focus(); });
  });

  const preset = document.getElementById("preset");
  if (!preset) return;
  const form = preset.form;
  const hint = document.getElementById("preset-hint");
  preset.closest("label").hidden = false;
  preset.addEventListener("change", function () {
    const o = preset.selectedOptions[0];
    hint.textContent = (o && o.dataset.hint) || "";
    if (!o || !o.dataset.host) return;
    form.elements.host.value = o.dataset.host;
    form.elements.port.value = o.dataset.port;
    form.elements.security.value = o.dataset.security;
  });
})();
