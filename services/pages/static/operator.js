// The sub-district's console: overview, riders (history, redemptions, adjustments), partners and rewards,
// disputes, rules (check, what-if, publish), dead letters, reports. It talks only to the HTTP APIs.
"use strict";
(function () {
  const { t, $, el, say, fail, explain, call, download, at, showLapsing, statusBadge } = window.WB;
  const SVG = "http://www.w3.org/2000/svg";
  const CATEGORIES = ["volunteer_service", "civic_practice", "activity_participation", "grassroots_governance",
    "safe_riding", "skill_development", "publicity_outreach", "honors"];
  const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  const loaded = {};

  // ---- small helpers -------------------------------------------------------------------------------

  // Today and this month in the programme's time zone, whatever the browser's.
  function shanghaiDay(date) {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(date || new Date());
    const get = (type) => parts.find((p) => p.type === type).value;
    return get("year") + "-" + get("month") + "-" + get("day");
  }
  function monthDays(ym) {
    const [y, m] = ym.split("-").map(Number);
    const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
    return [ym + "-01", ym + "-" + String(last).padStart(2, "0")];
  }
  function categoryName(key) { return words("cat_" + key) || key; }
  function words(key) { const text = t(key); return text === key ? "" : text; }
  function kindName(kind) { return words("kind_" + kind) || kind; }
  function num(n) { return (n === null || n === undefined) ? "–" : Number(n).toLocaleString(window.WB.config.tag); }
  // "现在" / "12秒钟前" / "3分钟前" / "5小时前", in the page's language (Intl.RelativeTimeFormat, CLDR).
  const relative = new Intl.RelativeTimeFormat(window.WB.config.tag, { numeric: "auto" });
  function ago(iso) {
    const s = Math.max(0, Math.round((Date.now() - new Date(iso)) / 1000));
    if (s < 90) return relative.format(-s, "second");
    if (s < 90 * 60) return relative.format(-Math.round(s / 60), "minute");
    if (s < 36 * 3600) return relative.format(-Math.round(s / 3600), "hour");
    return at(iso);
  }
  function cell(text, cls) { return el("td", { class: cls || null, text: text === null || text === undefined ? "" : String(text) }); }
  function empty(cols) { return el("tr", {}, el("td", { colspan: String(cols), class: "empty", text: t("none_yet") })); }

  // A bar chart drawn as SVG by the page itself (nothing fetched from elsewhere): one bar per row.
  function barChart(box, rows) {
    box.replaceChildren();
    if (!rows.length) { box.append(el("p", { class: "empty", text: t("none_yet") })); return; }
    const max = Math.max(1, ...rows.map((r) => r.value));
    const rowH = 28, labelW = 150, width = 480;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + rows.length * rowH);
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "bars");
    rows.forEach((r, i) => {
      const y = i * rowH;
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", "0"); label.setAttribute("y", String(y + 19));
      label.textContent = r.label;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(labelW)); bar.setAttribute("y", String(y + 5));
      bar.setAttribute("height", "18"); bar.setAttribute("rx", "3");
      bar.setAttribute("width", String(Math.max(1, Math.round((width - labelW - 70) * r.value / max))));
      const value = document.createElementNS(SVG, "text");
      value.setAttribute("x", String(labelW + Math.round((width - labelW - 70) * r.value / max) + 6));
      value.setAttribute("y", String(y + 19));
      value.setAttribute("class", "value");
      value.textContent = num(r.value);
      const title = document.createElementNS(SVG, "title");
      title.textContent = r.label + ": " + num(r.value);
      bar.append(title);
      svg.append(label, bar, value);
    });
    box.append(svg);
  }

  // The server's problem next to the field it names (its `errors`, or a detail that starts "field: "),
  // anything else above the form.
  function clearProblems(form) {
    for (const node of form.querySelectorAll(".field-error")) { node.hidden = true; node.textContent = ""; }
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }
  function showProblems(form, prefix, result) {
    clearProblems(form);
    const body = result.body || {};
    const named = Array.isArray(body.errors) ? body.errors.map((e) => [e.field, e.reason || e.message]) : [];
    const lead = /^([a-z_]+)(?:\.[\w.]+)?: /.exec(body.detail || "");
    if (!named.length && lead) named.push([lead[1], body.detail]);
    let placed = 0;
    // The console's own words for the refusals it knows, in the page's language; the API's otherwise.
    const known = words("op_err_" + window.WB.slugOf(body));
    for (const [field, reason] of named) {
      const top = String(field || "").split(".")[0];
      const box = $(prefix + top + "-error");
      if (!box) continue;
      box.textContent = known || reason || explain(result);
      box.hidden = false;
      const input = $(prefix + top);
      if (input) { input.setAttribute("aria-invalid", "true"); if (!placed) input.focus(); }
      placed += 1;
    }
    if (!placed) fail(known || explain(result)); else fail("");
  }
  function fieldProblem(prefix, field, text) {
    const box = $(prefix + field + "-error");
    box.textContent = text;
    box.hidden = false;
    $(prefix + field).setAttribute("aria-invalid", "true");
    $(prefix + field).focus();
  }

  // body[data-ready=true] once nothing is loading (what the browser tests wait for): loads may overlap when
  // the operator switches tabs before the last one finished.
  let loading = 0;
  async function busy(work) {
    loading += 1;
    document.body.dataset.ready = "false";
    try { await work; } finally {
      loading -= 1;
      if (!loading) document.body.dataset.ready = "true";
    }
  }

  // One confirmation dialog for every change that cannot be taken back.
  let onConfirm = null;
  function confirmFirst(title, text, yes, action) {
    onConfirm = action;
    $("confirm-h").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    $("confirm").showModal();
    $("confirm-no").focus();
  }
  $("confirm-yes").addEventListener("click", async () => {
    const action = onConfirm;
    onConfirm = null;
    $("confirm").close();
    if (action) await action();
  });
  $("confirm-no").addEventListener("click", () => { onConfirm = null; $("confirm").close(); });

  // ---- tabs ----------------------------------------------------------------------------------------

  const TABS = ["overview", "riders", "disputes", "partners", "rules", "dead", "reports"];
  const LOADERS = { overview: loadOverview, riders: () => findRiders(false), disputes: () => loadDisputes(false),
    partners: loadPartners,
    rules: loadRules, dead: () => loadDeadLetters(false), reports: loadReport };

  async function show(tab, again) {
    for (const name of TABS) {
      const on = name === tab;
      $("tab-" + name).setAttribute("aria-selected", String(on));
      $("tab-" + name).tabIndex = on ? 0 : -1;
      $("panel-" + name).hidden = !on;
    }
    fail("");
    if (again || !loaded[tab]) { loaded[tab] = true; await busy(LOADERS[tab]()); }
  }
  for (const name of TABS) $("tab-" + name).addEventListener("click", () => show(name, true));
  // Arrow keys move between tabs, as the WAI-ARIA tabs pattern has it.
  document.querySelector(".tabs").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const i = TABS.indexOf(document.activeElement.dataset.tab);
    if (i < 0) return;
    const next = TABS[(i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
    $("tab-" + next).focus();
    show(next, false);
  });

  // ---- 概览 overview --------------------------------------------------------------------------------

  async function awardedByCategory(from, to) {
    const r = await call("points", "/v1/reports/points?by=category&from=" + from + "&to=" + to);
    if (!r.ok) { fail(explain(r)); return null; }
    const byKey = Object.fromEntries(r.body.items.map((i) => [i.key, i.awarded]));
    return CATEGORIES.map((c) => ({ label: categoryName(c), value: byKey[c] || 0 }));
  }

  async function loadOverview() {
    const today = shanghaiDay();
    const [todayRows, monthRows, settlements, dead, scoring, disputesOpen] = await Promise.all([
      awardedByCategory(today, today),
      awardedByCategory(today.slice(0, 8) + "01", today),
      call("redemption", "/v1/reports/settlements?month=" + today.slice(0, 7)),
      call("events", "/v1/dead-letters?limit=100&waiting=true"),
      call("points", "/v1/scoring"),
      call("points", "/v1/disputes?status=open&limit=100"),
    ]);
    if (todayRows) {
      $("ov-today-total").textContent = num(todayRows.reduce((s, r) => s + r.value, 0));
      barChart($("ov-today-chart"), todayRows);
    }
    if (monthRows) {
      $("ov-month-total").textContent = num(monthRows.reduce((s, r) => s + r.value, 0));
      barChart($("ov-month-chart"), monthRows);
    }
    if (settlements.ok) {
      const kinds = { merchant: 0, hospital: 0, barber: 0 };
      for (const s of settlements.body.items) {
        if (s.kind in kinds) kinds[s.kind] += s.redemptions;
      }
      barChart($("ov-kinds"), Object.entries(kinds).map(([k, v]) => ({ label: kindName(k), value: v })));
    } else fail(explain(settlements));
    if (disputesOpen.ok) {
      const items = disputesOpen.body.items;
      $("ov-disputes").textContent = (disputesOpen.body.next_cursor ? "100+" : String(items.length)) +
        (items.length ? " · " + t("ov_oldest", { ago: ago(items[0].created_at) }) : "");
    }
    if (dead.ok) $("ov-dead").textContent = dead.body.next_cursor ? "100+" : String(dead.body.items.length);
    if (scoring.ok) {
      const s = scoring.body;
      $("ov-waiting").textContent = num(s.waiting) + (s.waiting_capped ? "+" : "") +
        (s.oldest_waiting_received_at ? " · " + t("ov_oldest", { ago: ago(s.oldest_waiting_received_at) }) : "");
      $("ov-last-scored").textContent = s.last_scored_at ? ago(s.last_scored_at) : t("none_yet");
    }
  }
  $("ov-to-dead").addEventListener("click", () => show("dead", true));

  // ---- 骑手 riders ----------------------------------------------------------------------------------

  let riderCursor = null;
  let rider = null;
  let historyCursor = null;
  let adjustmentKey = null;

  async function findRiders(more) {
    const form = $("rider-search");
    clearProblems(form.parentElement);
    const prefix = $("rider-prefix").value.trim();
    const path = "/v1/riders?limit=20&prefix=" + encodeURIComponent(prefix) +
      (more && riderCursor ? "&cursor=" + encodeURIComponent(riderCursor) : "");
    const r = await call("points", path);
    if (!r.ok) {
      if (r.status === 422) fieldProblem("rider-", "prefix", t("rd_prefix_bad"));
      else fail(explain(r));
      return;
    }
    const rows = $("riders");
    if (!more) rows.replaceChildren();
    for (const b of r.body.items) {
      const open = el("button", { type: "button", class: "link", text: b.rider_id, onclick: () => openRider(b.rider_id) });
      rows.append(el("tr", { "data-testid": "rider-row" }, el("td", {}, open), cell(num(b.available), "num"), cell(num(b.held), "num")));
    }
    if (!rows.children.length) rows.append(empty(3));
    riderCursor = r.body.next_cursor;
    $("riders-more").hidden = !riderCursor;
  }
  $("rider-search").addEventListener("submit", async (e) => { e.preventDefault(); await findRiders(false); });
  $("riders-more").addEventListener("click", () => findRiders(true));

  function entryItem(e) {
    const what = e.kind === "award" && e.category ? categoryName(e.category) : t("kind_" + e.kind);
    const rule = e.rule_id ? t("rule") + " " + e.rule_id + " v" + e.rule_version : null;
    // A lapse's reason already names the award it came from; its source and lot id would say it again, cryptically.
    const origin = e.kind === "lapse" ? null
      : e.event_id ? e.source + " / " + e.event_id : e.actor ? t("rd_by") + " " + e.actor : null;
    return el("li", { class: "entry", "data-testid": "rd-entry" },
      el("div", { class: "row" }, el("strong", { text: what }),
        el("span", { class: "amount " + (e.amount > 0 ? "plus" : e.amount < 0 ? "minus" : "nil"),
                     text: (e.amount > 0 ? "+" : "") + e.amount + " " + t("points") })),
      el("p", { class: "reason", text: e.reason }),
      el("p", { class: "meta", text: [at(e.occurred_at || e.at), origin, rule].filter(Boolean).join(" · ") }));
  }

  async function loadBalance() {
    const r = await call("points", "/v1/riders/" + encodeURIComponent(rider) + "/balance");
    if (!r.ok) { fail(explain(r)); return; }
    $("rd-available").textContent = num(r.body.available);
    $("rd-held").textContent = num(r.body.held);
    $("rd-earned").textContent = num(r.body.earned_total);
    $("rd-redeemed").textContent = num(r.body.redeemed_total);
    showLapsing($("rd-lapsing"), r.body.lapsing);
  }

  async function loadHistory(more) {
    const r = await call("points", "/v1/riders/" + encodeURIComponent(rider) + "/entries?limit=20" +
      (more && historyCursor ? "&cursor=" + encodeURIComponent(historyCursor) : ""));
    if (!r.ok) { fail(explain(r)); return; }
    const list = $("rd-history");
    if (!more) list.replaceChildren();
    for (const e of r.body.items) list.append(entryItem(e));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
    historyCursor = r.body.next_cursor;
    $("rd-more").hidden = !historyCursor;
  }

  async function loadRiderRedemptions() {
    const r = await call("redemption", "/v1/redemptions?limit=20&rider_id=" + encodeURIComponent(rider));
    if (!r.ok) { fail(explain(r)); return; }
    const list = $("rd-redemptions");
    list.replaceChildren(...r.body.items.map((x) => el("li", { "data-testid": "rd-redemption" },
      el("div", { class: "row" }, el("strong", { text: x.title }), statusBadge(x.status)),
      el("p", { class: "meta", text: x.cost + " " + t("points") + " · " + at(x.created_at) }))));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
  }

  async function openRider(id) {
    rider = id;
    adjustmentKey = null;
    $("rider-detail").hidden = false;
    $("rd-id").textContent = id;
    clearProblems($("adjust-form"));
    await busy((async () => { await loadBalance(); await Promise.all([loadHistory(false), loadRiderRedemptions()]); })());
    $("rider-detail").scrollIntoView({ block: "start" });
  }
  $("rd-more").addEventListener("click", () => loadHistory(true));

  // An adjustment: checked here for the obvious, confirmed by the operator, then posted with one
  // idempotency key for as long as the same adjustment is being tried (a retry after a timeout cannot
  // post it twice); a new key once it is done or the form changes.
  $("adjust-form").addEventListener("input", () => { adjustmentKey = null; });
  $("adjust-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = $("adjust-form");
    clearProblems(form);
    const amount = $("adj-amount").value.trim();
    const reason = $("adj-reason").value.trim();
    if (!/^[+-]?\d{1,7}$/.test(amount) || Number(amount) === 0) return fieldProblem("adj-", "amount", t("adj_amount_bad"));
    if (!reason) return fieldProblem("adj-", "reason", t("adj_reason_bad"));
    const points = Number(amount);
    adjustmentKey = adjustmentKey || crypto.randomUUID();
    confirmFirst(t("adj_title"), t("adj_confirm", { rider: rider, amount: (points > 0 ? "+" : "") + points, reason: reason }),
      t("adj_post"), async () => {
        const r = await call("points", "/v1/adjustments", {
          method: "POST", headers: { "Idempotency-Key": adjustmentKey },
          json: { rider_id: rider, amount: points, reason: reason },
        });
        if (!r.ok) { showProblems(form, "adj-", r); return; }
        adjustmentKey = null;
        form.reset();
        say(t("adj_done", { amount: (points > 0 ? "+" : "") + points, rider: rider }));
        await Promise.all([loadBalance(), loadHistory(false), findRiders(false)]);
      });
  });

  // ---- 申诉 disputes ----------------------------------------------------------------------------------

  let disputeCursor = null;
  let dispute = null;
  let resolveKey = null;

  function disputeItem(d) {
    return el("li", { "data-testid": "dispute", "data-dispute": d.dispute_id },
      el("div", { class: "row" },
        el("button", { type: "button", class: "link", text: t("ds_item", { rider: d.rider_id, entry: d.entry_id }),
                       onclick: () => openDispute(d) }),
        el("span", { class: "meta", text: t("ds_opened", { when: ago(d.created_at) }) })),
      el("p", { class: "reason", text: d.message }));
  }

  async function loadDisputes(more) {
    const status = $("ds-status").value;
    const r = await call("points", "/v1/disputes?limit=20&status=" + status +
      (more && disputeCursor ? "&cursor=" + encodeURIComponent(disputeCursor) : ""));
    if (!r.ok) { fail(explain(r)); return; }
    const list = $("disputes");
    if (!more) { list.replaceChildren(); $("dispute-detail").hidden = true; }
    for (const d of r.body.items) list.append(disputeItem(d));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("ds_none") }));
    disputeCursor = r.body.next_cursor;
    $("ds-more").hidden = !disputeCursor;
  }
  $("ds-more").addEventListener("click", () => busy(loadDisputes(true)));
  $("ds-refresh").addEventListener("click", () => busy(loadDisputes(false)));
  $("ds-status").addEventListener("change", () => busy(loadDisputes(false)));

  function openDispute(d) {
    dispute = d;
    resolveKey = null;
    const e = d.entry || {};
    $("dispute-detail").hidden = false;
    $("dd-title").textContent = t("ds_item", { rider: d.rider_id, entry: d.entry_id });
    $("dd-message").textContent = d.message;
    $("dd-meta").textContent = t("ds_opened", { when: at(d.created_at) });
    const what = e.kind === "award" && e.category ? categoryName(e.category) : kindName(e.kind);
    $("dd-entry").textContent = [what, (e.amount > 0 ? "+" : "") + e.amount + " " + t("points"), at(e.occurred_at || e.at)].join(" · ");
    $("dd-entry-reason").textContent = e.reason || "";
    $("dd-rule").textContent = e.rule_id ? t("rule") + " " + e.rule_id + " v" + e.rule_version : "";
    $("dd-event").textContent = e.event ? JSON.stringify(e.event, null, 2) : t("ds_no_event");
    $("dd-event-box").open = Boolean(e.event);
    const resolved = d.status === "resolved";
    $("dd-outcome").hidden = !resolved;
    if (resolved) {
      $("dd-outcome").textContent = d.outcome === "upheld"
        ? t("ds_was_upheld", { by: d.resolved_by, when: at(d.resolved_at), amount: (d.amount > 0 ? "+" : "") + d.amount, reply: d.reply })
        : t("ds_was_rejected", { by: d.resolved_by, when: at(d.resolved_at), reply: d.reply });
    }
    const form = $("resolve-form");
    form.hidden = resolved;
    form.reset();
    clearProblems(form);
    $("dispute-detail").scrollIntoView({ block: "start" });
  }

  // Answered once: the same answer being tried keeps one idempotency key (a retry cannot answer twice).
  $("resolve-form").addEventListener("input", () => { resolveKey = null; });
  $("resolve-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = $("resolve-form");
    clearProblems(form);
    const picked = form.querySelector("input[name=outcome]:checked");
    if (!picked) return fieldProblem("rs-", "outcome", t("ds_outcome_bad"));
    const outcome = picked.value;
    const amount = $("rs-amount").value.trim();
    const reply = $("rs-reply").value.trim();
    if (outcome === "upheld" && (!/^[+-]?\d{1,7}$/.test(amount) || Number(amount) === 0)) {
      return fieldProblem("rs-", "amount", t("adj_amount_bad"));
    }
    if (!reply) return fieldProblem("rs-", "reply", t("adj_reason_bad"));
    const points = outcome === "upheld" ? Number(amount) : null;
    const body = { outcome: outcome, reply: reply };
    if (points !== null) body.amount = points;
    const d = dispute;
    resolveKey = resolveKey || crypto.randomUUID();
    const text = outcome === "upheld"
      ? t("ds_confirm_upheld", { rider: d.rider_id, amount: (points > 0 ? "+" : "") + points, reply: reply })
      : t("ds_confirm_rejected", { rider: d.rider_id, reply: reply });
    confirmFirst(t("ds_resolve"), text, t("ds_post"), async () => {
      const r = await call("points", "/v1/disputes/" + encodeURIComponent(d.dispute_id) + "/resolve", {
        method: "POST", headers: { "Idempotency-Key": resolveKey }, json: body,
      });
      if (!r.ok) { showProblems(form, "rs-", r); return; }
      resolveKey = null;
      say(t("ds_done", { rider: d.rider_id }));
      await busy(loadDisputes(false));
      openDispute(r.body);
    });
  });

  // ---- 商家与奖励 partners and rewards ----------------------------------------------------------------

  let rewards = [];
  let editing = null;

  async function loadPartners() {
    const [p, r] = await Promise.all([call("redemption", "/v1/partners"), call("redemption", "/v1/rewards?include_inactive=true")]);
    if (!p.ok) { fail(explain(p)); return; }
    if (!r.ok) { fail(explain(r)); return; }
    const partners = p.body.items;
    rewards = r.body.items;
    const rows = $("partners");
    rows.replaceChildren(...partners.map((x) => el("tr", { "data-testid": "partner-row" },
      cell(x.partner_id), cell(x.name), cell(kindName(x.kind)), cell(x.active_rewards + " / " + x.rewards, "num"))));
    if (!rows.children.length) rows.append(empty(4));
    $("rf-partner_id").replaceChildren(...partners.map((x) => el("option", { value: x.partner_id, text: x.name + " (" + x.partner_id + ")" })));
    const list = $("rewards");
    list.replaceChildren(...rewards.map((w) => el("tr", { "data-testid": "reward-row", "data-reward": w.reward_id, class: w.active ? null : "inactive" },
      cell(w.title), cell(w.partner_name), cell(num(w.cost), "num"),
      cell(w.stock_per_month === null ? t("unlimited") : num(w.stock_per_month), "num"),
      cell(w.stock_left === null ? t("unlimited") : num(w.stock_left), "num"),
      cell(w.active ? t("rw_on") : t("rw_off")),
      el("td", { class: "cell-actions" },
        el("button", { type: "button", class: "link", text: t("rw_edit"), "aria-label": t("rw_edit") + " " + w.title, onclick: () => edit(w) }),
        el("button", { type: "button", class: "link", text: w.active ? t("rw_deactivate") : t("rw_activate"),
                       "aria-label": (w.active ? t("rw_deactivate") : t("rw_activate")) + " " + w.title, onclick: () => toggle(w) })))));
    if (!list.children.length) list.append(empty(7));
  }

  function rewardBody(w, active) {
    return { reward_id: w.reward_id, partner_id: w.partner_id, title: w.title, cost: w.cost,
      stock_per_month: w.stock_per_month, per_rider_monthly_limit: w.per_rider_monthly_limit, active: active };
  }

  function edit(w) {
    editing = w.reward_id;
    clearProblems($("reward-form"));
    $("rf-h").textContent = t("rw_editing", { title: w.title });
    $("rf-reward_id").value = w.reward_id;
    $("rf-reward_id").readOnly = true;
    $("rf-partner_id").value = w.partner_id;
    $("rf-title").value = w.title;
    $("rf-cost").value = w.cost;
    $("rf-stock_per_month").value = w.stock_per_month === null ? "" : w.stock_per_month;
    $("rf-per_rider_monthly_limit").value = w.per_rider_monthly_limit === null ? "" : w.per_rider_monthly_limit;
    $("rf-active").checked = w.active;
    $("rf-title").focus();
  }

  function newReward() {
    editing = null;
    $("reward-form").reset();
    clearProblems($("reward-form"));
    $("rf-reward_id").readOnly = false;
    $("rf-h").textContent = t("rw_new");
  }
  $("rf-reset").addEventListener("click", newReward);

  function toggle(w) {
    const text = t(w.active ? "rw_deactivate_confirm" : "rw_activate_confirm", { title: w.title, partner: w.partner_name });
    confirmFirst(w.title, text, w.active ? t("rw_deactivate") : t("rw_activate"), async () => {
      const r = await call("redemption", "/v1/rewards/" + encodeURIComponent(w.reward_id), { method: "PUT", json: rewardBody(w, !w.active) });
      if (!r.ok) { fail(explain(r)); return; }
      say(t(w.active ? "rw_deactivated" : "rw_activated", { title: w.title }));
      await loadPartners();
    });
  }

  // Numbers stay numbers; an empty optional field is "no limit" (null); anything else goes to the server
  // as typed, so that its problem names the field.
  function optionalNumber(id) {
    const v = $(id).value.trim();
    return v === "" ? null : /^\d+$/.test(v) ? Number(v) : v;
  }

  $("reward-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = $("reward-form");
    clearProblems(form);
    const cost = $("rf-cost").value.trim();
    const body = { reward_id: $("rf-reward_id").value.trim(), partner_id: $("rf-partner_id").value,
      title: $("rf-title").value.trim(), cost: /^\d+$/.test(cost) ? Number(cost) : cost,
      stock_per_month: optionalNumber("rf-stock_per_month"), per_rider_monthly_limit: optionalNumber("rf-per_rider_monthly_limit"),
      active: $("rf-active").checked };
    const r = editing
      ? await call("redemption", "/v1/rewards/" + encodeURIComponent(editing), { method: "PUT", json: body })
      : await call("redemption", "/v1/rewards", { method: "POST", json: body });
    if (!r.ok) { showProblems(form, "rf-", r); return; }
    say(t("rw_saved", { title: body.title }));
    newReward();
    await loadPartners();
  });

  $("partner-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = $("partner-form");
    clearProblems(form);
    const body = { partner_id: $("pf-partner_id").value.trim(), name: $("pf-name").value.trim(), kind: $("pf-kind").value };
    const r = await call("redemption", "/v1/partners", { method: "POST", json: body });
    if (!r.ok) { showProblems(form, "pf-", r); return; }
    say(t("pt_added", { name: body.name }));
    form.reset();
    await loadPartners();
  });

  // ---- 规则 rules ----------------------------------------------------------------------------------

  async function loadRules() {
    const r = await call("points", "/v1/rules/versions");
    if (!r.ok) { fail(explain(r)); return; }
    const list = $("rule-versions");
    list.replaceChildren(...r.body.items.map((v) => el("li", { "data-testid": "rule-version" },
      el("div", { class: "row" }, el("strong", { text: v.rules_id + " v" + v.version }),
        el("span", { class: "meta", text: t("ru_effective", { when: at(v.effective_from) }) })),
      el("p", { class: "meta", text: [v.published_by, at(v.published_at)].filter(Boolean).join(" · ") }),
      el("details", {}, el("summary", { text: t("ru_document") }),
        el("pre", { class: "mono", text: v.yaml || JSON.stringify(v.document, null, 2) })))));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("none_yet") }));
    const today = shanghaiDay();
    if (!$("ru-from").value) { $("ru-from").value = today.slice(0, 8) + "01"; $("ru-to").value = today; }
  }

  $("ru-file").addEventListener("change", async () => {
    const file = $("ru-file").files[0];
    if (file) $("ru-text").value = await file.text();
  });

  // A rules file's problems come as `errors`: {line, column, path, message} (a refusal of a valid file: no line).
  function ruleProblem(p) {
    const where = [p.line ? t("ru_line", { n: p.line }) : null, p.path].filter(Boolean).join(" ");
    return el("li", { "data-testid": "rule-problem" }, where ? el("strong", { text: where + ": " }) : null,
      document.createTextNode(p.message));
  }

  function showRuleProblems(result) {
    const box = $("ru-problems");
    const errors = (result.body && result.body.errors) || [];
    if (!errors.length) { fail(explain(result)); return; }
    box.replaceChildren(...errors.map(ruleProblem));
    box.hidden = false;
    fail("");
  }

  async function postRules(path) {
    $("ru-problems").hidden = true;
    $("ru-valid").hidden = true;
    const text = $("ru-text").value;
    if (!text.trim()) { fail(t("ru_empty")); $("ru-text").focus(); return null; }
    const r = await call("points", path, { method: "POST", text: text, contentType: "application/yaml" });
    if (!r.ok) { showRuleProblems(r); return null; }
    return r.body;
  }

  function summary(s) {
    return t("ru_valid", { id: s.rules_id, version: s.version, when: at(s.effective_from) });
  }

  $("rules-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = await postRules("/v1/rules/check");
    if (body) { $("ru-valid").textContent = summary(body); $("ru-valid").hidden = false; }
  });

  function diffRows(box, rows, label) {
    box.replaceChildren(...rows.map((x) => el("tr", { "data-testid": "whatif-row" }, cell(label(x)), cell(num(x.current), "num"),
      cell(num(x.candidate), "num"),
      cell((x.change > 0 ? "+" : "") + num(x.change), "num " + (x.change > 0 ? "plus" : x.change < 0 ? "minus" : "")))));
    if (!box.children.length) box.append(empty(4));
  }

  $("ru-whatif").addEventListener("click", async () => {
    clearProblems($("rules-form"));
    const from = $("ru-from").value, to = $("ru-to").value;
    if (!from || !to || from > to) return fieldProblem("ru-", "from", t("ru_period_bad"));
    // The page asks for the last day; the API takes the day after it (as `warmbee rules what-if --to`).
    const after = new Date(Date.UTC(...to.split("-").map((n, i) => Number(n) - (i === 1 ? 1 : 0))) + 86400000);
    const body = await postRules("/v1/rules/what-if?from=" + from + "&to=" + after.toISOString().slice(0, 10));
    if (!body) return;
    $("ru-report").hidden = false;
    $("ru-report-sum").textContent = t("ru_report_sum", { events: num(body.events), riders: num(body.riders_changed) });
    diffRows($("ru-by-category"), body.categories, (x) => categoryName(x.category));
    diffRows($("ru-by-rider"), body.riders, (x) => x.rider_id);
  });

  $("ru-publish").addEventListener("click", async () => {
    const checked = await postRules("/v1/rules/check");
    if (!checked) return;
    confirmFirst(t("ru_publish"), t("ru_publish_confirm", { id: checked.rules_id, version: checked.version, when: at(checked.effective_from) }),
      t("ru_publish"), async () => {
        const body = await postRules("/v1/rules/versions");
        if (!body) return;
        say(t("ru_published", { id: body.rules_id, version: body.version, when: at(body.effective_from) }));
        await loadRules();
      });
  });

  // ---- 异常 dead letters -----------------------------------------------------------------------------

  let deadCursor = null;

  function deadItem(d) {
    const where = d.topic ? t("dl_where", { topic: d.topic, partition: d.partition, offset: d.offset }) : t("dl_http");
    const result = el("p", { class: "meta", "data-testid": "dl-result",
                             text: d.retried_at ? t("dl_retried", { when: at(d.retried_at) }) : "" });
    const retry = el("button", { type: "button", class: "secondary", text: t("dl_retry"), onclick: async () => {
      retry.disabled = true;
      const r = await call("events", "/v1/dead-letters/" + d.dead_letter_id + "/retry", { method: "POST" });
      retry.disabled = false;
      if (!r.ok) { fail(explain(r)); return; }
      result.textContent = t("dl_status_" + r.body.status);
    } });
    return el("li", { "data-testid": "dead-letter" },
      el("div", { class: "row" }, el("strong", { text: d.source && d.event_id ? d.source + " / " + d.event_id : "#" + d.dead_letter_id }),
        el("span", { class: "meta", text: at(d.received_at) })),
      el("p", { class: "reason", text: d.reason }),
      el("p", { class: "meta", text: where }),
      el("details", {}, el("summary", { text: t("dl_payload") }), el("pre", { class: "mono", text: d.payload })),
      el("div", { class: "actions" }, result, retry));
  }

  async function loadDeadLetters(more) {
    const r = await call("events", "/v1/dead-letters?limit=20" + (more && deadCursor ? "&cursor=" + encodeURIComponent(deadCursor) : ""));
    if (!r.ok) { fail(explain(r)); return; }
    const list = $("dead-letters");
    if (!more) list.replaceChildren();
    for (const d of r.body.items) list.append(deadItem(d));
    if (!list.children.length) list.append(el("li", { class: "empty", text: t("dl_none") }));
    deadCursor = r.body.next_cursor;
    $("dl-more").hidden = !deadCursor;
  }
  $("dl-more").addEventListener("click", () => loadDeadLetters(true));
  $("dl-refresh").addEventListener("click", () => loadDeadLetters(false));

  // ---- 报表 reports ----------------------------------------------------------------------------------

  let reportCursor = null;

  function reportPath(withCursor) {
    const [from, to] = monthDays($("rp-month").value);
    return "/v1/reports/points?by=" + $("rp-by").value + "&from=" + from + "&to=" + to +
      (withCursor && reportCursor ? "&cursor=" + encodeURIComponent(reportCursor) : "");
  }

  async function loadReport(more) {
    if (!$("rp-month").value) $("rp-month").value = shanghaiDay().slice(0, 7);
    const by = $("rp-by").value;
    $("rp-key-h").textContent = t(by === "category" ? "rp_category" : by === "rider" ? "rider" : "rp_day");
    const [r, s] = await Promise.all([call("points", reportPath(more === true)),
      more === true ? null : call("redemption", "/v1/reports/settlements?month=" + $("rp-month").value)]);
    if (!r.ok) { fail(explain(r)); return; }
    const rows = $("report");
    if (more !== true) rows.replaceChildren();
    for (const i of r.body.items) {
      const key = by === "category" ? categoryName(i.key) : i.key;
      rows.append(el("tr", { "data-testid": "report-row" }, cell(key), cell(num(i.awarded), "num"), cell(num(i.adjusted), "num"),
        cell(num(i.redeemed), "num"), cell(num(i.lapsed), "num"), cell(num(i.events), "num")));
    }
    if (!rows.children.length) rows.append(empty(6));
    reportCursor = r.body.next_cursor;
    $("rp-more").hidden = !reportCursor;
    if (s) showSettlements(s);
  }

  function showSettlements(s) {
    if (!s.ok) { fail(explain(s)); return; }
    const rows = $("settlements");
    rows.replaceChildren(...s.body.items.map((x) => {
      return el("tr", { "data-testid": "settlement-row" }, cell(x.name), cell(kindName(x.kind)),
        cell(num(x.redemptions), "num"), cell(num(x.points_total), "num"));
    }));
    if (!rows.children.length) rows.append(empty(4));
  }

  $("report-form").addEventListener("submit", async (e) => { e.preventDefault(); fail(""); await loadReport(false); });
  $("rp-more").addEventListener("click", () => loadReport(true));

  async function save(service, path, accept, name) {
    const r = await download(service, path, accept, name);
    if (!r.ok) { fail(explain(r)); return; }
    say(t("rp_saved", { name: r.name }));
  }
  const ym = () => $("rp-month").value;
  $("rp-csv").addEventListener("click", () => save("points", reportPath(false), "text/csv", "points-" + ym() + ".csv"));
  $("rp-xlsx").addEventListener("click", () => save("points", reportPath(false), XLSX, "points-" + ym() + ".xlsx"));
  $("st-csv").addEventListener("click", () => save("redemption", "/v1/reports/settlements?month=" + ym(), "text/csv", "settlements-" + ym() + ".csv"));
  $("st-xlsx").addEventListener("click", () => save("redemption", "/v1/reports/settlements?month=" + ym(), XLSX, "settlements-" + ym() + ".xlsx"));

  // ---- start ---------------------------------------------------------------------------------------

  window.WB.boot(() => {
    const asked = location.hash.slice(1);
    show(TABS.includes(asked) ? asked : "overview", true);
  });
})();
