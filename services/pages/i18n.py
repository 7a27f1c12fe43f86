"""The words of the pages, through the gettext ``pages`` domain: the English msgids are marked here (``N_``,
``Np_`` where one English word is two Chinese ones), the Chinese is in
``libs/i18n/locale/zh_CN/LC_MESSAGES/pages.po`` (``make i18n-pages`` extracts, merges and compiles). The
server renders the templates' static text with ``t.<key>`` and hands the same words to the page's script,
which draws the rest; ``{name}`` placeholders are filled by the script."""

from __future__ import annotations

from libs.i18n.language import Language, translations

Msg = str | tuple[str, str]  # a msgid, or (context, msgid)

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
    "cat_volunteer_service": N_("Volunteer service"),
    "cat_civic_practice": N_("Civic practice"),
    "cat_activity_participation": N_("Activity participation"),
    "cat_grassroots_governance": N_("Grassroots governance"),
    "cat_safe_riding": N_("Safe riding"),
    "cat_skill_development": N_("Skill development"),
    "cat_publicity_outreach": N_("Publicity and outreach"),
    "cat_honors": N_("Honours"),
    "err_insufficient-points": N_("Not enough points for this reward yet."),
    "err_out-of-stock": N_("None left this month; come back next month."),
    "err_monthly-limit-reached": N_("You reached this reward's monthly limit."),
    "err_reward-inactive": N_("This reward is not offered at the moment."),
    "err_reward-unknown": N_("This reward does not exist."),
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
}


def words(lang: Language) -> dict[str, str]:
    """Every word of the pages in ``lang``, by key (the keys the templates and the scripts use)."""
    catalogue = translations("pages", lang)
    out: dict[str, str] = {}
    for key, msg in WORDS.items():
        out[key] = str(catalogue.pgettext(*msg) if isinstance(msg, tuple) else catalogue.gettext(msg))
    out["switch_lang"], out["switch_lang_label"] = SWITCH[lang]
    return out
