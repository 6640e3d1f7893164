/* Live countdowns on the console's pages.
 *
 * Every <time data-countdown datetime="ISO" data-now="ISO"> shows the time left until its
 * datetime, updated once a second, in the words the broker rendered it with ("29m 59s left",
 * "expired"). data-now is the broker's clock when it made the page, so a reader's clock that is
 * off does not shift the count. When a count reaches zero on a page that names its own address
 * (data-refresh on <main>), the page is loaded again once, a moment later, to show the grant's
 * new state, unless something has been typed into a form on it.
 */
"use strict";

(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll("time[data-countdown]"));
  if (items.length === 0) {
    return;
  }
  var started = Date.now();
  var typed = false;
  var reloading = false;
  document.addEventListener("input", function () { typed = true; });

  function left(ms) {
    var seconds = Math.ceil(ms / 1000);
    if (seconds <= 0) {
      return "expired";
    }
    var parts = [];
    var units = [["d", 86400], ["h", 3600], ["m", 60]];
    for (var i = 0; i < units.length; i += 1) {
      var count = Math.floor(seconds / units[i][1]);
      seconds -= count * units[i][1];
      if (count > 0 || parts.length > 0) {
        parts.push(count + units[i][0]);
      }
    }
    parts.push(seconds + "s");
    return parts.join(" ") + " left";
  }

  var counts = items.map(function (item) {
    var end = Date.parse(item.getAttribute("datetime") || "");
    var now = Date.parse(item.getAttribute("data-now") || "");
    var offset = isNaN(now) ? 0 : now - started;
    return { item: item, end: end, offset: offset, running: !isNaN(end) && end > started + offset };
  });

  function reloadOnce() {
    var main = document.querySelector("main[data-refresh]");
    if (reloading || typed || main === null) {
      return;
    }
    var target = main.getAttribute("data-refresh") || "";
    if (target.charAt(0) !== "/" || target.charAt(1) === "/") {
      return; // only an address of the broker's own
    }
    reloading = true;
    window.setTimeout(function () { window.location.assign(target); }, 2000);
  }

  function tick() {
    var clock = Date.now();
    counts.forEach(function (count) {
      if (isNaN(count.end)) {
        return;
      }
      var ms = count.end - (clock + count.offset);
      var text = left(ms);
      if (count.item.textContent !== text) {
        count.item.textContent = text;
      }
      if (ms <= 0 && count.running) {
        count.running = false;
        reloadOnce();
      }
    });
  }

  tick();
  window.setInterval(tick, 1000);
}());
