// kx serve: keep the page's live parts ([data-live] elements) current. Each event the ledger gets arrives on
// /api/stream; the page is then fetched again and those parts replaced, leaving forms being filled alone.
(function () {
  "use strict";
  var REFRESH_AFTER_MS = 150;
  var ELAPSED_EVERY_MS = 10000;
  var pending = null;

  function liveParts(root) {
    return root.querySelectorAll("[data-live][id]");
  }

  function refresh() {
    pending = null;
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        liveParts(document).forEach(function (old) {
          var replacement = fresh.getElementById(old.id);
          if (replacement) {
            old.replaceWith(document.importNode(replacement, true));
          }
        });
      })
      .catch(function () { /* the next event or tick tries again */ });
  }

  function soon() {
    if (pending === null) {
      pending = window.setTimeout(refresh, REFRESH_AFTER_MS);
    }
  }

  if (liveParts(document).length && window.EventSource) {
    var stream = new window.EventSource("/api/stream");
    stream.onmessage = soon;
    stream.onopen = function () {  // (re)connected: what happened meanwhile is fetched too
      document.documentElement.dataset.live = "connected";
      soon();
    };
    stream.onerror = function () { document.documentElement.dataset.live = "reconnecting"; };
    window.setInterval(soon, ELAPSED_EVERY_MS);
  }
})();
