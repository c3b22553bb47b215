// ES5 on purpose: it has to run where panel.js cannot. Outlook 2016 and 2019
// (volume-licensed) show add-ins in Internet Explorer 11, which cannot read
// panel.js at all; without this the pane would say "Loading…" forever.
(function () {
  var modern = typeof Promise !== "undefined" && typeof window.fetch === "function" &&
    typeof Symbol !== "undefined" && typeof Object.entries === "function";
  if (modern) return;
  window.__threadlineUnsupported = true;
  function explain() {
    var main = document.getElementById("main");
    if (!main) return;
    while (main.firstChild) main.removeChild(main.firstChild);
    var p = document.createElement("p");
    p.className = "status error";
    p.appendChild(document.createTextNode(
      "This version of Outlook runs add-ins in Internet Explorer, which Threadline does not support. " +
      "Use Outlook on the web, the new Outlook or a current Outlook desktop, or open " +
      window.location.protocol + "//" + window.location.host + "/panel in a browser beside your mail."));
    main.appendChild(p);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", explain);
  else explain();
})();
