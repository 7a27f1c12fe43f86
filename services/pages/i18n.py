"""The words of the pages, through the gettext ``pages`` domain: the English msgids are marked here (``N_``,
``Np_`` where one English word is two Chinese ones, ``Nn_`` for a sentence with a number), the Chinese is in
``libs/i18n/locale/zh_CN/LC_MESSAGES/pages.po`` (``make i18n-pages`` extracts, merges and compiles). The
server renders the templates' static text with ``t.<key>`` and hands the same words to the page's script,
which draws the rest; ``{name}`` placeholders are filled by the script."""

from __future__ import annotations

from dataclasses import dataclass

from libs.i18n.language import Language, translations


@dataclass(frozen=True, slots=True)
class Plural:
    """A sentence with a number in it: the script picks its form by the number (``tn()`` in common.js)."""

    singular: str
    plural: str


Msg = str | tuple[str, str] | Plural  # a msgid, (context, msgid), or a msgid with its plural

# The language switch names the other language in that language, so that its reader finds it: not a
# translation of anything, so not in the catalogue.
SWITCH: dict[Language, tuple[str, str]] = {
    "zh": ("English", "Switch to English"),
    "en": ("中文", "切换到中文"),
}


# gettext's marker names: Babel extracts their arguments (keywords in the Makefile); they return them unchanged.
def N_(msgid: str) -> str:
    return msgid


def Np_(context: str, msgid: str) -> tuple[str, str]:
    return context, msgid


def Nn_(singular: str, plural: str) -> Plural:
    return Plural(singular, plural)


WORDS: dict[str, Msg] = {
    # common
    "brand": N_("Warm Bee points"),
    "token_label": N_("Sign-in token"),
    "token_help": N_("Paste the token the sub-district staff gave you."),
    "sign_in": N_("Sign in"),
    "sign_out": N_("Sign out"),
    "signed_in_as": N_("Signed in as"),
    "loading": N_("Loading…"),
    "retry": N_("Retry"),
    "cancel": N_("Cancel"),
    "points": N_("pts"),
    "none_yet": N_("Nothing yet"),
    "unlimited": N_("unlimited"),
    "network_error": N_("The network is not reachable; try again shortly."),
    "unauthenticated": N_("The token is invalid or expired; sign in again."),
    "forbidden": N_("This token may not do that."),
    "unexpected": N_("Something went wrong; try again later."),
    # status of a redemption
    "status_held": N_("Waiting for the counter"),
    "status_confirmed": N_("Confirmed"),
    "status_cancelled": N_("Cancelled"),
    "status_expired": N_("Expired"),
    # rider page
    "rider_title": N_("My points"),
    "available": N_("Available"),
    "held": N_("On hold"),
    "earned_total": N_("Earned in all"),
    "redeemed_total": Np_("balance", "Redeemed"),
    "lapsing": Nn_("{points} point lapses after {on}", "{points} points lapse after {on}"),
    "my_redemptions": N_("My redemptions"),
    "show_code": N_("Show this code at the counter"),
    "expires_in": N_("Valid for"),
    "expired_now": N_("Expired"),
    "cancel_redemption": N_("Cancel redemption"),
    "cancelled_ok": N_("Cancelled; the points are back."),
    "qr_alt": N_("Redemption QR code"),
    "catalogue": N_("Rewards"),
    "kind_merchant": N_("Warm merchants"),
    "kind_hospital": N_("Warm hospitals"),
    "kind_barber": N_("Barbers"),
    "cost": N_("Cost"),
    "stock_left": N_("Left this month"),
    "per_rider_limit": N_("Per rider a month"),
    "short_by": N_("{n} points short"),
    "redeem": Np_("button", "Redeem"),
    "confirm_title": N_("Confirm redemption"),
    "confirm_text": N_(
        "Spend {cost} points on “{title}” ({partner})? The points are held until the "
        "partner confirms; cancel, or let it expire, and they come back."
    ),
    "confirm_yes": Np_("confirmation dialog", "Redeem"),
    "redeemed_ok": N_("Done: show the code at the counter."),
    "history": N_("Points history"),
    "rule": N_("rule"),
    "more": N_("Load more"),
    "earned_zero": N_("no points this time"),
    "kind_award": N_("Earned"),
    "kind_adjustment": N_("Adjustment"),
    "kind_hold": N_("Held for a reward"),
    "kind_release": N_("Returned"),
    "kind_redeem": Np_("history entry", "Redeemed"),
    "kind_expire": N_("Hold expired"),
    "kind_lapse": N_("Points lapsed"),
    "cat_volunteer_service": N_("Volunteer service"),
    "cat_civic_practice": N_("Civic practice"),
    "cat_activity_participation": N_("Activity participation"),
    "cat_grassroots_governance": N_("Grassroots governance"),
    "cat_safe_riding": N_("Safe riding"),
    "cat_skill_development": N_("Skill development"),
    "cat_publicity_outreach": N_("Publicity and outreach"),
    "cat_honors": N_("Honours"),
    "cat_none": N_("Not by category (adjustments)"),
    "cat_redemption": Np_("report row", "Redemptions"),
    "err_insufficient-points": N_("Not enough points for this reward yet."),
    "err_out-of-stock": N_("None left this month; come back next month."),
    "err_monthly-limit-reached": N_("You reached this reward's monthly limit."),
    "err_reward-inactive": N_("This reward is not offered at the moment."),
    "err_reward-unknown": N_("This reward does not exist."),
    "dispute_action": N_("Question this"),
    "dispute_title": N_("Question this entry"),
    "dispute_message": N_("What is wrong?"),
    "dispute_help": N_(
        "In your own words, e.g. the hours you really worked. The sub-district answers here; up to 1,000 characters."
    ),
    "dispute_send": N_("Send to the sub-district"),
    "dispute_empty": N_("Write what is wrong first."),
    "dispute_sent": N_("Sent. The sub-district's answer will show on this entry."),
    "dispute_waiting": N_("Questioned: waiting for the sub-district's answer."),
    "dispute_upheld": N_("Your question was upheld: {amount} points. The answer: {reply}"),
    "dispute_rejected": N_("Your question was not upheld; the points stay as they are. The answer: {reply}"),
    "dispute_you_said": N_("You wrote: {message}"),
    "err_dispute-open": N_("This entry already has a question waiting for an answer."),
    "err_entry-unknown": N_("This entry is not in your history; refresh the page."),
    # partner page
    "partner_title": N_("Partner counter"),
    "code_label": N_("Code"),
    "code_help": N_(
        "Type the 8-character code on the rider's phone (no 0, O, 1, I or L), or paste the scanned QR text."
    ),
    "look_up": N_("Look up"),
    "reward": N_("Reward"),
    "rider": N_("Rider"),
    "expires_at": N_("Valid until"),
    "confirm_code": N_("Confirm"),
    "confirmed_ok": N_("Confirmed: {title}, {cost} points."),
    "err_code-unknown": N_(
        "No such code. Check it against the rider's phone; after 5 wrong codes you wait 15 minutes."
    ),
    "err_code-expired": N_(
        "This code has expired and the points went back to the rider. Ask the rider to redeem again."
    ),
    "err_already-confirmed": N_("This code was already used at the counter; it cannot be used twice."),
    "err_already-cancelled": N_("The rider cancelled this redemption."),
    "err_too-many-wrong-codes": N_("Too many wrong codes: try again in {n} seconds and check the code with the rider."),
    "err_invalid-code": N_("A code is 8 letters and digits; check it and type it again."),
    "recent": N_("Recent redemptions"),
    "refresh": N_("Refresh"),
    "settlement": N_("Monthly settlement"),
    "month": N_("Month"),
    "show": N_("Show"),
    "settlement_sum": N_("{month}: {n} confirmed, {points} points in all"),
    # operator console
    "op_title": N_("Sub-district console"),
    "op_token_help": N_(
        "Paste an operator token (warmbee token operator <name>). "
        "It stays in this tab only and is never put in the address."
    ),
    "op_sign_in_provider": N_("Sign in with the programme's identity provider"),
    "op_provider_failed": N_("The identity provider did not sign you in: {error}"),
    "op_provider_stale": N_("That sign-in is no longer valid (started in another tab, or too old); sign in again."),
    "tab_overview": N_("Overview"),
    "tab_riders": N_("Riders"),
    "tab_partners": N_("Partners and rewards"),
    "tab_disputes": N_("Disputes"),
    "tab_rules": N_("Rules"),
    "tab_dead": N_("Problems"),
    "tab_reports": N_("Reports"),
    "ov_today": N_("Points awarded today"),
    "ov_month": N_("Points awarded this month"),
    "ov_redemptions": N_("Redemptions this month by partner kind"),
    "ov_attention": N_("Needs attention"),
    "ov_dead": N_("Dead letters waiting"),
    "ov_waiting": N_("Events waiting to be scored"),
    "ov_oldest": N_("the oldest {ago}"),
    "ov_last_scored": N_("Last points awarded"),
    "ov_lag_help": N_("Scoring keeps up when nothing waits for more than a few seconds."),
    "rd_search": N_("Rider id starts with"),
    "rd_search_hint": N_("e.g. rider-00"),
    "rd_find": N_("Find"),
    "rd_prefix_bad": N_("A rider id has letters, digits and - _ . : only; check what you typed."),
    "rd_by": N_("by"),
    "rd_redemptions": N_("Redemptions"),
    "adj_title": N_("Adjust points"),
    "adj_amount": N_("Points (+ adds, − takes away)"),
    "adj_amount_help": N_("A whole number, not 0, e.g. 30 or -10."),
    "adj_amount_bad": N_("Type a whole number other than 0, e.g. 30 or -10."),
    "adj_reason": N_("Reason (the rider reads it)"),
    "adj_reason_help": N_("One line in your own words, e.g. 补发 5 月 3 日志愿服务积分."),
    "adj_reason_bad": N_("Write the reason: the rider sees it in the history."),
    "adj_review": N_("Review"),
    "adj_confirm": N_(
        "Adjust {rider} by {amount} points, because: {reason}? "
        "It is posted once and cannot be undone; a correction is another adjustment."
    ),
    "adj_post": N_("Post the adjustment"),
    "adj_done": N_("Adjusted {rider} by {amount} points."),
    "pt_partners": N_("Partners"),
    "pt_id": N_("Partner id"),
    "pt_name": N_("Partner"),
    "pt_kind": N_("Kind"),
    "pt_rewards": N_("Rewards (active / all)"),
    "pt_new": N_("New partner"),
    "pt_add": N_("Add partner"),
    "pt_added": N_("Added {name}."),
    "rw_id": N_("Reward id"),
    "rw_title": N_("Title"),
    "rw_stock": N_("Stock a month"),
    "rw_state": N_("State"),
    "rw_on": N_("Offered"),
    "rw_off": N_("Not offered"),
    "rw_new": N_("New reward"),
    "rw_editing": N_("Editing “{title}”"),
    "rw_active": N_("Offered to riders"),
    "rw_save": N_("Save reward"),
    "rw_saved": N_("Saved “{title}”."),
    "rw_edit": N_("Edit"),
    "rw_activate": N_("Offer again"),
    "rw_deactivate": N_("Stop offering"),
    "rw_activate_confirm": N_("Offer “{title}” ({partner}) to riders again?"),
    "rw_deactivate_confirm": N_(
        "Stop offering “{title}” ({partner})? Codes already held can still be used until they expire."
    ),
    "rw_activated": N_("“{title}” is offered again."),
    "rw_deactivated": N_("“{title}” is no longer offered."),
    "ru_versions": N_("Published versions"),
    "ru_effective": N_("in force from {when}"),
    "ru_document": N_("The rules"),
    "ru_candidate": N_("A new rules file"),
    "ru_file": N_("Choose a file (YAML)"),
    "ru_text": N_("or paste it here"),
    "ru_check": N_("Check"),
    "ru_from": N_("From"),
    "ru_to": N_("to"),
    "ru_whatif": N_("What if"),
    "ru_publish": N_("Publish"),
    "ru_empty": N_("Choose or paste a rules file first."),
    "ru_line": N_("line {n}"),
    "ru_valid": N_("Valid: {id} v{version}, in force from {when}."),
    "ru_period_bad": N_("Choose a period: the first day, then the last (not before the first)."),
    "ru_report": N_("What if these rules had applied"),
    "ru_report_sum": N_("{events} events scored again, {riders} riders would get a different total."),
    "ru_now": N_("Now"),
    "ru_then": N_("Candidate"),
    "ru_diff": N_("Difference"),
    "ru_publish_confirm": N_(
        "Publish {id} v{version}, in force from {when}? Events of that date and later are scored by it."
    ),
    "ru_published": N_("Published {id} v{version}, in force from {when}."),
    "dl_help": N_(
        "Events that could not be scored, newest first. Retry once the source or the rules are fixed; "
        "an event already scored is not scored twice."
    ),
    "dl_none": N_("No dead letters: every event was scored."),
    "dl_http": N_("sent over HTTP"),
    "dl_where": N_("topic {topic}, partition {partition}, offset {offset}"),
    "dl_payload": N_("What was received"),
    "dl_retry": N_("Retry"),
    "dl_retried": N_("Retried {when}"),
    "dl_status_pending": N_("Accepted again: waiting to be scored."),
    "dl_status_scored": N_("Scored."),
    "dl_status_dead_lettered": N_("Still refused: see the new reason above after refreshing."),
    "rp_by": N_("By"),
    "rp_category": N_("Category"),
    "rp_day": N_("Day"),
    "rp_csv": N_("CSV"),
    "rp_xlsx": N_("Excel"),
    "rp_ledger": N_("Points ledger"),
    "rp_awarded": N_("Awarded"),
    "rp_adjusted": N_("Adjusted"),
    "rp_redeemed": N_("Redeemed"),
    "rp_lapsed": N_("Lapsed"),
    "rp_events": N_("Events"),
    "rp_saved": N_("Saved {name}."),
    "rp_settlements": N_("Partners' settlements"),
    "op_err_insufficient-points": N_(
        "The rider has fewer points available than this takes away; take away at most the available points."
    ),
    "op_err_partner-exists": N_("A partner with this id exists already; choose another id."),
    "op_err_reward-exists": N_("A reward with this id exists already; edit it in the list, or choose another id."),
    "ov_disputes": N_("Disputes waiting"),
    "ds_show": N_("Show"),
    "ds_open": N_("Waiting for an answer (oldest first)"),
    "ds_resolved": N_("Answered"),
    "ds_help": N_(
        "A rider questioned one of its entries. Look at the entry and its event, then uphold it with an "
        "adjustment or reject it with a reply; each dispute is answered once, and the rider is told."
    ),
    "ds_none": N_("No disputes here."),
    "ds_item": N_("{rider}: entry {entry}"),
    "ds_opened": N_("Asked {when}"),
    "ds_entry": N_("The entry questioned"),
    "ds_event": N_("The event it scored"),
    "ds_no_event": N_("No event: this entry is not an award."),
    "ds_resolve": N_("Answer"),
    "ds_outcome": N_("Outcome"),
    "ds_upheld": N_("Upheld: adjust the points"),
    "ds_rejected": N_("Rejected: no change"),
    "ds_amount": N_("Points to adjust"),
    "ds_amount_help": N_("Upheld only: a whole number, + to give, − to take back, e.g. 9."),
    "ds_reply": N_("Reply to the rider"),
    "ds_reply_help": N_("The rider reads it on the page and in the notice, e.g. 已核实三小时."),
    "ds_outcome_bad": N_("Choose upheld or rejected."),
    "ds_confirm_upheld": N_("Uphold the dispute of {rider} and adjust {amount} points, replying: {reply}"),
    "ds_confirm_rejected": N_("Reject the dispute of {rider}, replying: {reply}"),
    "ds_post": N_("Answer the dispute"),
    "ds_done": N_("Answered the dispute of {rider}."),
    "ds_was_upheld": N_("Upheld by {by} {when}: {amount} points. Reply: {reply}"),
    "ds_was_rejected": N_("Rejected by {by} {when}. Reply: {reply}"),
    "op_err_dispute-resolved": N_("Another operator answered this dispute already; refresh to see the answer."),
    "st_count": N_("Confirmed"),
    "st_points": N_("Points"),
}


def page_keys(key: str) -> tuple[str, ...]:
    """The keys a word of ``WORDS`` has in the pages: a sentence with a number has one per plural form
    the scripts ask for (Intl.PluralRules' ``one`` and ``other``)."""
    return (f"{key}_one", f"{key}_other") if isinstance(WORDS[key], Plural) else (key,)


def words(lang: Language) -> dict[str, str]:
    """Every word of the pages in ``lang``, by key (the keys the templates and the scripts use)."""
    catalogue = translations("pages", lang)
    out: dict[str, str] = {}
    for key, msg in WORDS.items():
        if isinstance(msg, Plural):
            # CLDR's "one" is gettext's n = 1 in English; Chinese has "other" alone, one msgstr for every n.
            out[f"{key}_one"] = str(catalogue.ngettext(msg.singular, msg.plural, 1))
            out[f"{key}_other"] = str(catalogue.ngettext(msg.singular, msg.plural, 2))
        elif isinstance(msg, tuple):
            out[key] = str(catalogue.pgettext(*msg))
        else:
            out[key] = str(catalogue.gettext(msg))
    out["switch_lang"], out["switch_lang_label"] = SWITCH[lang]
    return out
