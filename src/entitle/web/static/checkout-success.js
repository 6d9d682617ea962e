// The success page listens on the entitlements stream until the purchase lands, then says so.
// Stripe sends the person back before its webhook reaches entitle; the stream answers the moment it does.
(function () {
  "use strict";
  var panel = document.getElementById("checkout-status");
  if (!panel || panel.dataset.state === "done") return;
  var csrf = panel.dataset.csrf;
  var attempts = 0;

  // The entitlements the purchase grants, when the page knows the product; else any web plan will do.
  var awaited = (panel.dataset.entitlements || "").split(" ").filter(Boolean);

  // A one-time purchase: its PaymentIntent, which lands among the answer's purchases.
  var purchase = panel.dataset.purchase || "";

  function landed(answer) {
    if (purchase) {
      return (answer.purchases || []).some(function (p) {
        return p.id === purchase;
      });
    }
    var entitlements = answer.entitlements || {};
    function paidOnWeb(key) {
      return Boolean(entitlements[key] && entitlements[key].active && entitlements[key].store === "stripe");
    }
    return awaited.length ? awaited.every(paidOnWeb) : Object.keys(entitlements).some(paidOnWeb);
  }

  function done() {
    panel.dataset.state = "done";
    panel.querySelector(".waiting").hidden = true;
    panel.querySelector(".done").hidden = false;
    panel.querySelector(".done a").focus();
  }

  function listen() {
    attempts += 1;
    fetch("/account/stream-ticket", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("ticket " + response.status);
        return response.json();
      })
      .then(function (body) {
        var stream = new EventSource("/v1/me/entitlements/stream?ticket=" + encodeURIComponent(body.ticket));
        stream.addEventListener("entitlements", function (event) {
          if (landed(JSON.parse(event.data))) {
            stream.close();
            done();
          }
        });
        // A ticket is single-use: when the connection drops, ask for a new one rather than let
        // EventSource retry with the spent ticket.
        stream.onerror = function () {
          stream.close();
          retry();
        };
      })
      .catch(retry);
  }

  function retry() {
    if (panel.dataset.state === "done" || attempts >= 20) return;
    setTimeout(listen, Math.min(1000 * attempts, 5000));
  }

  listen();
})();
