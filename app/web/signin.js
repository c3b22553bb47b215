/* The Office dialog fallback for Microsoft sign-in (when the host has no nested
   app authentication): MSAL.js redirect flow in a dialog, then the access token
   goes back to the task pane with Office.context.ui.messageParent. */
(function () {
  "use strict";
  const MSAL_URL = "https://cdn.jsdelivr.net/npm/@azure/msal-browser@3.27.0/lib/msal-browser.min.js";
  // Subresource integrity of that exact file (from the npm package): a changed CDN copy is refused.
  const MSAL_SRI = "sha384-8zg7Eb13Jv4vByCkXozj1LKSUykPghS+Zp1Q9BA8lYkMDbushxoDjh+RQ+4r1DNd";
  function fail(message) {
    document.getElementById("error").textContent = message;
    try { Office.context.ui.messageParent(JSON.stringify({ error: message })); } catch (e) { /* not in a dialog */ }
  }
  function send(result) {
    Office.context.ui.messageParent(JSON.stringify({
      token: result.accessToken,
      expires: result.expiresOn ? new Date(result.expiresOn).getTime() : Date.now() + 3000000,
    }));
  }
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.crossOrigin = "anonymous"; s.integrity = MSAL_SRI; s.onload = resolve;
      s.onerror = () => reject(new Error("could not load MSAL.js"));
      document.head.appendChild(s);
    });
  }
  Office.onReady(async () => {
    try {
      const cfg = await fetch("/panel/config.json").then(r => r.json());
      if (!cfg.entra) { fail("Microsoft sign-in is not configured on this server."); return; }
      await loadScript(MSAL_URL);
      const pca = new window.msal.PublicClientApplication({
        auth: { clientId: cfg.entra.client_id, authority: cfg.entra.authority + "/" + (cfg.entra.tenant || "organizations"),
                redirectUri: location.origin + "/panel/signin" },
        cache: { cacheLocation: "sessionStorage" },
      });
      await pca.initialize();
      const scopes = [cfg.entra.scope_uri];
      const back = await pca.handleRedirectPromise();
      if (back && back.accessToken) { send(back); return; }
      const account = pca.getAllAccounts()[0];
      if (account) {
        try { send(await pca.acquireTokenSilent({ scopes, account })); return; } catch (e) { /* interaction needed */ }
      }
      await pca.acquireTokenRedirect({ scopes });
    } catch (e) {
      fail("Sign-in failed: " + (e && e.message ? e.message : e));
    }
  });
})();
