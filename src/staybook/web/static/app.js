// staybook pages: maps, the hold countdown, submit-once forms, the host calendar's range
// selection, photo upload progress and behaviour signals. No inline scripts (CSP script-src 'self').
(function () {
  "use strict";

  function each(selector, fn, root) { Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn); }

  // Maps: markers from list items with data-lat/data-lon; tiles only when a tile URL is configured.
  function initMaps() {
    if (!window.L) { return; }
    each(".map[data-markers]", function (element) {
      if (element.dataset.ready) { return; }
      element.dataset.ready = "1";
      var points = [];
      each(element.dataset.markers + " [data-lat]", function (item) {
        var lat = parseFloat(item.dataset.lat), lon = parseFloat(item.dataset.lon);
        if (!isNaN(lat) && !isNaN(lon)) { points.push({ lat: lat, lon: lon, item: item }); }
      });
      var map = window.L.map(element, { scrollWheelZoom: false, attributionControl: !!element.dataset.tiles });
      if (element.dataset.tiles) {
        window.L.tileLayer(element.dataset.tiles, { maxZoom: 18, attribution: element.dataset.attribution || "" }).addTo(map);
      }
      var bounds = [];
      points.forEach(function (point) {
        var marker = window.L.circleMarker([point.lat, point.lon], { radius: 9, color: "#083f77", weight: 2, fillColor: "#0b57a4", fillOpacity: 0.9 }).addTo(map);
        var label = point.item.dataset.name + (point.item.dataset.price ? " · " + point.item.dataset.price : "");
        if (point.item.dataset.href) {
          var link = document.createElement("a");
          link.href = point.item.dataset.href;
          link.textContent = label;
          marker.bindPopup(link);
          marker.on("mouseover", function () { point.item.classList.add("active"); });
          marker.on("mouseout", function () { point.item.classList.remove("active"); });
        } else {
          marker.bindTooltip(label);
        }
        bounds.push([point.lat, point.lon]);
      });
      function frame() {
        if (bounds.length > 1) { map.fitBounds(bounds, { padding: [24, 24] }); }
        else if (bounds.length === 1) { map.setView(bounds[0], 14); }
        else { map.setView([48.85, 2.35], 3); }
      }
      frame();
      // A map laid out at another size (a phone turned, a column that appeared) frames its markers again.
      map.on("resize", frame);
    });
  }

  // The hold's countdown, from the seconds the server counted (no dependence on the client's clock).
  function initCountdowns() {
    each(".countdown[data-seconds-left]", function (element) {
      var left = parseInt(element.dataset.secondsLeft, 10);
      var clock = element.querySelector(".countdown-clock");
      var timer = setInterval(function () {
        left -= 1;
        if (left <= 0) {
          clearInterval(timer);
          element.classList.add("expired");
          window.location.assign(element.dataset.expiredUrl);
          return;
        }
        var minutes = Math.floor(left / 60), seconds = left % 60;
        clock.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
        if (left === 60) { element.setAttribute("aria-live", "assertive"); }
      }, 1000);
    });
  }

  // A second press of a submit button sends nothing new (and the form's Idempotency-Key makes a
  // resent form give the first answer anyway).
  function initOnceForms() {
    each("form[data-once]", function (form) {
      form.addEventListener("submit", function (event) {
        if (form.dataset.sent) { event.preventDefault(); return; }
        form.dataset.sent = "1";
        each("button[type=submit]", function (button) { button.setAttribute("aria-busy", "true"); }, form);
      });
    });
  }

  // Host calendar: click a first and a last night to select the range the form changes.
  function initRangeSelect() {
    each("[data-range-grid]", function (grid) {
      var form = document.querySelector(grid.dataset.rangeGrid);
      if (!form) { return; }
      var first = null;
      grid.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-night]");
        if (!button) { return; }
        event.preventDefault();
        var night = button.dataset.night;
        if (first === null || night < first) {
          first = night;
          form.elements.start.value = night;
          form.elements.end.value = night;
        } else {
          form.elements.end.value = night;
          first = null;
        }
        var start = form.elements.start.value, end = form.elements.end.value;
        each("button[data-night]", function (b) {
          var on = b.dataset.night >= start && b.dataset.night <= end;
          b.classList.toggle("selected", on);
          b.setAttribute("aria-pressed", on ? "true" : "false");
        }, grid);
      });
    });
  }

  // Photo upload with a progress bar (XMLHttpRequest: fetch has no upload progress).
  function initUploads() {
    each("form[data-upload]", function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var bar = form.querySelector("progress"), status = form.querySelector("[data-upload-status]");
        var request = new XMLHttpRequest();
        request.open("POST", form.action);
        request.setRequestHeader("X-CSRF-Token", form.elements.csrf_token.value);
        request.upload.addEventListener("progress", function (e) {
          if (e.lengthComputable) { bar.value = Math.round((e.loaded / e.total) * 100); }
        });
        request.addEventListener("load", function () {
          bar.value = 100;
          if (request.status < 400) { window.location.assign(form.dataset.upload); }
          else { status.textContent = request.responseText ? form.dataset.failed : form.dataset.failed; }
        });
        request.addEventListener("error", function () { status.textContent = form.dataset.failed; });
        bar.hidden = false;
        request.send(new FormData(form));
      });
    });
  }

  // Behaviour signals (search, view, click) for personalisation, batched and sent with sendBeacon
  // when the page is hidden or left, so they never hold up the page. The page carries a signed
  // session id (sendBeacon cannot send credentials headers); see docs/personalization.md.
  var signals = [];
  function signal(kind, data) {
    if (!document.body.dataset.signalsSession) { return; }
    data.kind = kind;
    data.at = new Date().toISOString();
    signals.push(data);
  }
  function flushSignals() {
    if (!signals.length || !navigator.sendBeacon) { return; }
    var body = JSON.stringify({ session: document.body.dataset.signalsSession, signals: signals.splice(0, 500) });
    navigator.sendBeacon("/api/v1/signals", new Blob([body], { type: "text/plain" }));
  }
  function initSignals() {
    var results = document.getElementById("result-list");
    if (results) {
      var query = new URLSearchParams(window.location.search);
      var searched = { city: query.get("city") || undefined, check_in: query.get("check_in") || undefined,
        check_out: query.get("check_out") || undefined, guests: parseInt(query.get("guests") || "0", 10) || undefined };
      signal("search", searched);
      results.addEventListener("click", function (event) {
        var card = event.target.closest("[data-property]");
        if (card) { signal("click", { property_id: card.dataset.property, position: parseInt(card.dataset.position, 10) }); }
      });
    }
    var property = document.querySelector("article.property[data-property]");
    if (property) { signal("view", { property_id: property.dataset.property }); }
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") { flushSignals(); } });
    window.addEventListener("pagehide", flushSignals);
  }

  // Panels folded on phones (the filters) start open on wide screens.
  function initFolds() {
    each("details[data-open-from]", function (details) {
      if (window.matchMedia("(min-width: " + details.dataset.openFrom + "px)").matches) { details.open = true; }
    });
  }

  function init() { initFolds(); initMaps(); initCountdowns(); initOnceForms(); initRangeSelect(); initUploads(); initSignals(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
  document.addEventListener("htmx:afterSettle", initMaps);
}());
