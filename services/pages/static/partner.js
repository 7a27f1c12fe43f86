// The partner's counter page: look up a code, confirm it; recent redemptions; the monthly settlement.
"use strict";
(function () {
  const { t, $, el, say, fail, explain, call, at, month: monthOf, statusBadge } = window.WB;
  let found = null;

  // rider-1001 -> ri******01: enough to tell riders apart at the counter, not to learn who they are
  // (always six stars, so the length does not show either).
  function mask(id) {
    if (id.length <= 4) return id[0] + "******";
    return id.slice(0, 2) + "******" + id.slice(-2);
  }

  function clearFound() {
    found = null;
    $("found").hidden = true;
  }

  async function lookUp(e) {
    e.preventDefault();
    fail(""); say(""); clearFound();
    const code = $("code").value.trim();
    const r = await call("redemption", "/v1/partner/codes/" + encodeURIComponent(code));
    if (!r.ok) { fail(explain(r)); $("code").focus(); return; }
    found = r.body;
    $("found-title").textContent = found.title;
    $("found-cost").textContent = found.cost + " " + t("points");
    $("found-rider").textContent = mask(found.rider_id);
    $("found-expires").textContent = at(found.expires_at);
    $("found").hidden = false;
    $("confirm-code").focus();
  }

  async function confirmCode() {
    if (!found) return;
    fail("");
    const r = await call("redemption", "/v1/partner/confirmations", { method: "POST", json: { code: $("code").value.trim() } });
    clearFound();
    if (!r.ok) { fail(explain(r)); return; }
    say(t("confirmed_ok", { title: r.body.title, cost: r.body.cost }));
    $("code").value = "";
    $("code").focus();
    await Promise.all([loadRecent(), loadSettlement()]);
  }

  async function loadRecent() {
    const r = await call("redemption", "/v1/partner/redemptions?limit=20");
    if (!r.ok) return fail(explain(r));
    const list = $("recent");
    list.replaceChildren(...r.body.items.map((x) => el("li", { class: "redemption", "data-testid": "recent", "data-status": x.status },
      el("div", { class: "row" }, el("strong", { text: x.title }), statusBadge(x.status)),
      el("p", { class: "meta", text: [x.cost + " " + t("points"), t("rider") + " " + mask(x.rider_id), at(x.resolved_at || x.created_at)].join(" · ") }))));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
  }

  function thisMonth() {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit" }).format(new Date());
    return parts.slice(0, 7);
  }

  async function loadSettlement(e) {
    if (e) e.preventDefault();
    const month = $("month").value || thisMonth();
    const r = await call("redemption", "/v1/partner/settlement?month=" + encodeURIComponent(month));
    if (!r.ok) return fail(explain(r));
    const s = r.body;
    $("settle-sum").textContent = t("settlement_sum", { month: monthOf(s.month), n: s.redemptions, points: s.points_total });
    $("settle-items").replaceChildren(...s.items.map((i) => el("li", { class: "row" },
      el("span", { text: i.title + " · " + at(i.confirmed_at) }), el("strong", { class: "amount", text: i.points + " " + t("points") }))));
  }

  $("code-form").addEventListener("submit", lookUp);
  $("confirm-code").addEventListener("click", confirmCode);
  $("refresh").addEventListener("click", loadRecent);
  $("settle-form").addEventListener("submit", loadSettlement);
  $("code").addEventListener("input", clearFound);

  window.WB.boot(async () => {
    $("month").value = thisMonth();
    await Promise.all([loadRecent(), loadSettlement()]);
    document.body.dataset.ready = "true";
    $("code").focus();
  });
})();
