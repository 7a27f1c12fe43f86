// The rider's page: balance, my redemptions (code, QR, countdown, cancel), catalogue, history, and on each
// entry of the history a question (申诉) to the sub-district and its answer.
"use strict";
(function () {
  const { t, $, el, say, fail, explain, call, at, showLapsing, statusBadge } = window.WB;
  let rider = null;
  let balance = null;
  let cursor = null;
  let timers = [];
  let disputes = new Map(); // entry_id -> the latest dispute of that entry

  async function loadBalance() {
    const r = await call("points", "/v1/riders/" + encodeURIComponent(rider) + "/balance");
    if (!r.ok) return fail(explain(r));
    balance = r.body;
    $("available").textContent = balance.available;
    $("held").textContent = balance.held;
    $("earned").textContent = balance.earned_total;
    $("redeemed").textContent = balance.redeemed_total;
    showLapsing($("lapsing"), balance.lapsing);
  }

  function entryItem(e) {
    const what = e.kind === "award" && e.category ? t("cat_" + e.category) : t("kind_" + e.kind);
    const sign = e.amount > 0 ? "+" : "";
    const rule = e.rule_id ? t("rule") + " " + e.rule_id + " v" + e.rule_version : null;
    return el("li", { class: "entry" + (e.amount === 0 && e.kind === "award" ? " zero" : ""), "data-testid": "entry" },
      el("div", { class: "row" },
        el("strong", { text: what }),
        el("span", { class: "amount " + (e.amount > 0 ? "plus" : e.amount < 0 ? "minus" : "nil"),
                     text: sign + e.amount + " " + t("points") })),
      e.amount === 0 && e.kind === "award" ? el("p", { class: "note", text: t("earned_zero") }) : null,
      el("p", { class: "reason", text: e.reason }),
      el("p", { class: "meta", text: [at(e.occurred_at || e.at), rule].filter(Boolean).join(" · ") }),
      disputeOf(e));
  }

  // The entry's question and its answer, or the button that asks one (none while one waits).
  function disputeOf(e) {
    const d = disputes.get(e.entry_id);
    const ask = el("button", { type: "button", class: "link", "data-testid": "dispute-ask", text: t("dispute_action"),
                               "aria-label": t("dispute_action") + " " + at(e.occurred_at || e.at), onclick: () => askAbout(e) });
    if (!d) return ask;
    let text = t("dispute_waiting");
    if (d.status === "resolved" && d.outcome === "upheld") {
      text = t("dispute_upheld", { amount: (d.amount > 0 ? "+" : "") + d.amount, reply: d.reply });
    } else if (d.status === "resolved") {
      text = t("dispute_rejected", { reply: d.reply });
    }
    return el("div", { class: "dispute", "data-testid": "dispute", "data-status": d.status, "data-outcome": d.outcome || "" },
      el("p", { class: "note", text: text }),
      el("p", { class: "meta", text: t("dispute_you_said", { message: d.message }) }),
      d.status === "resolved" ? ask : null);
  }

  async function loadDisputes() {
    const r = await call("points", "/v1/disputes?limit=500");
    if (!r.ok) return fail(explain(r));
    disputes = new Map();
    for (const d of r.body.items) disputes.set(d.entry_id, d); // oldest first: the latest stays
  }

  // One key per question being asked: sending again after a lost answer cannot open it twice.
  let asked = null;
  function askAbout(e) {
    asked = { entry: e, key: crypto.randomUUID() };
    fail("");
    const form = $("dispute-form");
    form.reset();
    $("ds-message-error").hidden = true;
    $("ds-message").removeAttribute("aria-invalid");
    const what = e.kind === "award" && e.category ? t("cat_" + e.category) : t("kind_" + e.kind);
    $("dispute-entry").textContent = [what, (e.amount > 0 ? "+" : "") + e.amount + " " + t("points"), at(e.occurred_at || e.at)].join(" · ");
    $("dispute").showModal();
    $("ds-message").focus();
  }

  function messageProblem(text) {
    $("ds-message-error").textContent = text;
    $("ds-message-error").hidden = false;
    $("ds-message").setAttribute("aria-invalid", "true");
    $("ds-message").focus();
  }

  async function sendDispute(ev) {
    ev.preventDefault();
    if (!asked) return;
    const message = $("ds-message").value.trim();
    if (!message) return messageProblem(t("dispute_empty"));
    $("dispute-send").disabled = true;
    const r = await call("points", "/v1/disputes", {
      method: "POST", headers: { "Idempotency-Key": asked.key }, json: { entry_id: asked.entry.entry_id, message: message },
    });
    $("dispute-send").disabled = false;
    if (!r.ok) return messageProblem(explain(r));
    asked = null;
    $("dispute").close();
    say(t("dispute_sent"));
    await refresh();
  }

  async function loadHistory(more) {
    const path = "/v1/riders/" + encodeURIComponent(rider) + "/entries?limit=20" +
      (more && cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    const r = await call("points", path);
    if (!r.ok) return fail(explain(r));
    const list = $("history");
    if (!more) list.replaceChildren();
    for (const e of r.body.items) list.append(entryItem(e));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
    cursor = r.body.next_cursor;
    $("more").hidden = !cursor;
  }

  function countdown(node, expiresAt) {
    function tick() {
      const left = Math.max(0, Math.floor((new Date(expiresAt) - Date.now()) / 1000));
      if (left === 0) { node.textContent = t("expired_now"); return false; }
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      node.textContent = [h, m, s].map((n) => String(n).padStart(2, "0")).join(":");
      return true;
    }
    if (tick()) timers.push(setInterval(tick, 1000));
  }

  function redemptionItem(r) {
    const item = el("li", { class: "redemption", "data-testid": "redemption", "data-status": r.status },
      el("div", { class: "row" }, el("strong", { text: r.title }), statusBadge(r.status)),
      el("p", { class: "meta", text: r.cost + " " + t("points") + " · " + at(r.created_at) }));
    if (r.status === "held" && r.code) {
      const left = el("span", { class: "countdown", "data-testid": "countdown" });
      item.append(
        el("p", { class: "help", text: t("show_code") }),
        el("p", { class: "code", "data-testid": "code", "aria-label": t("code_label") + " " + r.code.split("").join(" "),
                  text: r.code.slice(0, 4) + " " + r.code.slice(4) }),
        el("img", { class: "qr", src: "/qr/" + encodeURIComponent(r.qr_payload) + ".svg", alt: t("qr_alt") + " " + r.code,
                    width: "200", height: "200" }),
        el("p", { class: "row" }, el("span", { text: t("expires_in") }), left),
        el("button", { type: "button", class: "secondary", text: t("cancel_redemption"),
                       onclick: () => cancel(r.redemption_id) }));
      countdown(left, r.expires_at);
    }
    return item;
  }

  async function loadRedemptions() {
    const r = await call("redemption", "/v1/redemptions?limit=20");
    if (!r.ok) return fail(explain(r));
    timers.forEach(clearInterval);
    timers = [];
    const list = $("redemptions");
    list.replaceChildren(...r.body.items.map(redemptionItem));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
  }

  async function loadCatalogue() {
    const r = await call("redemption", "/v1/rewards");
    if (!r.ok) return fail(explain(r));
    const box = $("catalogue");
    box.replaceChildren();
    for (const kind of ["merchant", "hospital", "barber"]) {
      const items = r.body.items.filter((i) => i.kind === kind);
      if (!items.length) continue;
      const list = el("ul", { class: "list" });
      for (const i of items) {
        const short = balance && balance.available < i.cost ? i.cost - balance.available : 0;
        const facts = [t("cost") + " " + i.cost + " " + t("points"),
          t("stock_left") + " " + (i.stock_left === null ? t("unlimited") : i.stock_left)];
        if (i.per_rider_monthly_limit) facts.push(t("per_rider_limit") + " " + i.per_rider_monthly_limit);
        list.append(el("li", { class: "reward", "data-testid": "reward", "data-reward": i.reward_id },
          el("div", { class: "row" },
            el("div", {}, el("strong", { text: i.title }), el("p", { class: "meta", text: i.partner_name })),
            el("button", { type: "button", text: t("redeem"), "aria-label": t("redeem") + " " + i.title,
                           onclick: () => ask(i) })),
          el("p", { class: "meta", text: facts.join(" · ") }),
          short ? el("p", { class: "note", text: t("short_by", { n: short }) }) : null));
      }
      box.append(el("h3", { text: t("kind_" + kind) }), list);
    }
    if (!box.children.length) box.append(el("p", { class: "empty", text: t("none_yet") }));
  }

  let asking = null;
  function ask(item) {
    asking = item;
    fail("");
    $("confirm-text").textContent = t("confirm_text", { cost: item.cost, title: item.title, partner: item.partner_name });
    $("confirm").showModal();
    $("confirm-no").focus();
  }

  async function redeem() {
    const item = asking;
    $("confirm").close();
    if (!item) return;
    const key = crypto.randomUUID();
    const r = await call("redemption", "/v1/redemptions", {
      method: "POST", headers: { "Idempotency-Key": key }, json: { reward_id: item.reward_id, expected_cost: item.cost },
    });
    if (!r.ok) { fail(explain(r)); return; }
    say(t("redeemed_ok"));
    await refresh();
    const code = document.querySelector("[data-testid=code]");
    if (code) code.scrollIntoView({ block: "center" });
  }

  async function cancel(id) {
    fail("");
    const r = await call("redemption", "/v1/redemptions/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
    if (!r.ok) { fail(explain(r)); return; }
    say(t("cancelled_ok"));
    await refresh();
  }

  async function refresh() {
    await Promise.all([loadBalance(), loadDisputes()]);
    await Promise.all([loadRedemptions(), loadCatalogue(), loadHistory(false)]);
    document.body.dataset.ready = "true";
  }

  $("confirm-yes").addEventListener("click", redeem);
  $("confirm-no").addEventListener("click", () => $("confirm").close());
  $("more").addEventListener("click", () => loadHistory(true));
  $("dispute-form").addEventListener("submit", sendDispute);
  $("dispute-no").addEventListener("click", () => { asked = null; $("dispute").close(); });
  // Coming back to the page (after the counter) shows the new state.
  document.addEventListener("visibilitychange", () => { if (!document.hidden && rider) refresh(); });

  window.WB.boot((sub) => { rider = sub; refresh(); });
})();
