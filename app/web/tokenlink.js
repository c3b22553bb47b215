/* Threadline: a sign-in link, a token in the address's fragment (#token=...), as `threadline
   serve --demo` prints it and the console hands a new rep. Shared by the standalone panel and
   the pipeline board, which keep one token (localStorage "threadline.token").

   Taken as it is only where nobody is signed in, where the same user is (a new token of theirs),
   or where the token kept is refused anyway. Threat: anyone holding a token on this server (an
   admin of another organisation on a shared server) sends a rep such a link; taken silently, the
   rep's pane, board and reports would run as that someone, and the notes, tasks and deals the
   rep typed would land in the other organisation. So a link carrying someone else's sign-in is
   shown first, naming both, and used only when the rep chooses it. Names and organisations come
   from the server and are set as text. */
(function () {
  "use strict";

  // Whose token it is: the user, "refused" (401: revoked, expired, unknown), or null when that
  // cannot be told now (offline, a server error): then nothing is decided on it.
  async function who(token) {
    try {
      const r = await fetch("/api/me", {
        headers: { Accept: "application/json", Authorization: "Bearer " + token }, cache: "no-store",
      });
      if (r.status === 401) return "refused";
      return r.ok ? await r.json() : null;
    } catch (e) {
      return null;
    }
  }

  function named(me) {
    return (me.name ? me.name + " (" + me.email + ")" : me.email) + " of " + me.organisation;
  }

  function ask(current, linked) {
    return new Promise(resolve => {
      const box = document.createElement("section");
      box.id = "switch-signin";
      box.className = "reauth";
      box.setAttribute("role", "alertdialog");
      box.setAttribute("aria-labelledby", "switch-signin-title");
      const title = document.createElement("h2");
      title.id = "switch-signin-title";
      title.textContent = "Sign in as someone else?";
      const text = document.createElement("p");
      text.textContent = "This link signs you in as " + named(linked) + ". You are signed in as " +
        named(current) + ". Switch only if you expected this link.";
      // Names are each organisation's own to choose: one can look like another. The ids cannot.
      const other = document.createElement("p");
      other.className = "error";
      other.textContent = "This link belongs to another organisation than the one you are signed in to, " +
        "whatever its name says: what you enter after switching goes to that organisation.";
      other.hidden = linked.organisation_id === current.organisation_id;
      const stay = document.createElement("button");
      stay.type = "button";
      stay.className = "primary";
      stay.textContent = "Stay signed in as " + current.email;
      const change = document.createElement("button");
      change.type = "button";
      change.textContent = "Switch to " + linked.email;
      const actions = document.createElement("div");
      actions.className = "actions";
      actions.append(stay, change);
      box.append(title, text, other, actions);
      const done = choice => () => { box.remove(); resolve(choice); };
      stay.addEventListener("click", done(false));
      change.addEventListener("click", done(true));
      document.body.dataset.state = "switch-signin";
      document.body.prepend(box);
      stay.focus();
    });
  }

  const LINK = /(?:^#|&)token=([^&]*)/;

  // Whether the address carries a sign-in link (take() then takes it off).
  function offered() { return LINK.test(location.hash); }

  // The token to use from now on: the link's, or the one kept (`current`). `store` keeps a token.
  async function take(current, store) {
    const m = LINK.exec(location.hash);
    if (!m) return current;
    // Off the address first, whatever it holds: the caller starts again once this resolves.
    history.replaceState(null, "", location.pathname + location.search);
    let offered = "";
    try { offered = decodeURIComponent(m[1]).trim(); } catch (e) { /* a broken link: nothing to take */ }
    if (!offered || offered === current) return current;
    if (!current) { store(offered); return offered; }
    const [now, linked] = await Promise.all([who(current), who(offered)]);
    if (!linked || linked === "refused") return current; // the link's sign-in is refused or cannot be told
    if (now === "refused" || (now && now.id === linked.id)) { store(offered); return offered; }
    if (!now) return current; // the rep's own cannot be checked now: it stays
    if (await ask(now, linked)) { store(offered); return offered; }
    return current;
  }

  window.ThreadlineTokenLink = { offered, take };
})();
