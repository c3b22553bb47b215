// A sign-in link (`/admin/login#token=...`, printed by `threadline serve --demo`) carries the
// token in the fragment, which browsers never send to the server. Take it out of the address
// bar and history at once, then sign in with this page's own form (its login-CSRF value).
(function () {
  var match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return;
  history.replaceState(null, "", location.pathname + location.search);
  var form = document.getElementById("sign-in"), input = document.getElementById("token");
  if (!form || !input) return;
  input.value = decodeURIComponent(match[1]);
  form.submit();
})();
