// Tessera console: shows whether the live event stream is connected (the "live" badge in the
// header). Everything else is htmx attributes in the pages; no inline script anywhere, so the
// console runs under a script-src 'self' content security policy.
(function () {
  "use strict";

  var state = "off";
  var text = "offline";

  function show() {
    var badge = document.getElementById("live");
    if (badge) {
      badge.textContent = text;
      badge.setAttribute("data-state", state);
    }
  }

  function setLive(newState, newText) {
    state = newState;
    text = newText;
    show();
  }

  document.addEventListener("htmx:sseOpen", function () {
    setLive("on", "live");
  });
  document.addEventListener("htmx:sseError", function () {
    setLive("off", "reconnecting");
  });
  // a submitted form redraws the page's body (the stream, on <body>, stays open): redraw the
  // badge as it was
  document.addEventListener("htmx:afterSettle", show);
})();
