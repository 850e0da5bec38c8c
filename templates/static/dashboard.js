// Polo: live updates through Server-Sent Events, and the directory's form
// without page reloads.  The page works without this file; everything here
// fetches server-rendered (autoescaped) fragments and swaps them in.
"use strict";
(function () {
  var form = document.getElementById("directory-form");
  var status = document.getElementById("live-status");
  var current = new URLSearchParams(location.search).toString();

  function swap(id, url) {
    var target = document.getElementById(id);
    return fetch(url, { headers: { Accept: "text/html" } }).then(function (response) {
      if (!response.ok) { throw new Error(url + ": " + response.status); }
      return response.text();
    }).then(function (text) {
      var parsed = new DOMParser().parseFromString(text, "text/html");
      target.replaceChildren.apply(target, Array.prototype.map.call(
        parsed.body.childNodes, function (node) { return document.importNode(node, true); }));
    }).catch(function (error) { status.textContent = "Update failed: " + error.message; });
  }

  function formQuery() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) { if (value) { params.set(name, value); } });
    if (params.get("sort") === "address") { params.delete("sort"); }
    return params.toString();
  }

  function showDirectory(query) {
    current = query;
    history.replaceState(null, "", "/" + (query ? "?" + query : "") + "#directory");
    return swap("directory-results", "/fragment/directory?" + query);
  }

  function refreshAll() {
    swap("overview", "/fragment/overview");
    swap("directory-results", "/fragment/directory?" + current);
    swap("graph-view", "/fragment/graph");
  }

  var typing = null;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showDirectory(formQuery());
  });
  form.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () { showDirectory(formQuery()); }, 200);
  });
  document.getElementById("directory-results").addEventListener("click", function (event) {
    var link = event.target.closest("a[data-query]");
    if (!link) { return; }
    event.preventDefault();
    // A link may change the network filter ("all nodes"): the form follows, so its next change keeps it.
    form.elements.network.value = new URLSearchParams(link.getAttribute("data-query")).get("network") || "";
    showDirectory(link.getAttribute("data-query")).then(function () {
      document.getElementById("directory-count").focus();
    });
  });

  if (!window.EventSource) { return; }
  var connectedBefore = false;
  var source = new EventSource("/api/events");
  source.addEventListener("open", function () {
    status.textContent = "Live";
    status.className = "live on";
    // Back after a registry restart: what we show may be stale.
    if (connectedBefore) { refreshAll(); }
    connectedBefore = true;
  });
  source.addEventListener("change", refreshAll);
  source.addEventListener("error", function () {
    status.textContent = "Reconnecting…";
    status.className = "live";
  });
}());
