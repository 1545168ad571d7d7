// Tessera console: shows whether the live event stream is connected (the "live" badge in the
// header). Everything else is htmx attributes in the pages; no inline script anywhere, so the
// console runs under a script-src 'self' content security policy.
(function () {
  "use strict";

  function setLive(state, text) {
    var badge = document.getElementById("live");
    if (!badge) {
      return;
    }
    badge.textContent = text;
    badge.setAttribute("data-state", state);
  }

  document.addEventListener("htmx:sseOpen", function () {
    setLive("on", "live");
  });
  document.addEventListener("htmx:sseError", function () {
    setLive("off", "reconnecting");
  });
})();
