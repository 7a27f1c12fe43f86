"""The words of the pages, Chinese first and English. One dictionary: the server renders the static text in
the chosen language and hands the same words to the page's script for what it draws."""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
HTML_LANG: dict[Lang, str] = {"zh": "zh-CN", "en": "en"}

WORDS: dict[str, tuple[str, str]] = {
    # common
    "brand": ("暖蜂积分", "Warm Bee points"),
    "switch_lang": ("English", "中文"),
    "switch_lang_label": ("Switch to English", "切换到中文"),
    "token_label": ("登录令牌", "Sign-in token"),
    "token_help": ("粘贴街道工作人员发给您的令牌。", "Paste the token the sub-district staff gave you."),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "signed_in_as": ("当前账号", "Signed in as"),
    "loading": ("加载中…", "Loading…"),
    "retry": ("重试", "Retry"),
    "cancel": ("取消", "Cancel"),
    "points": ("分", "pts"),
    "none_yet": ("暂无记录", "Nothing yet"),
    "unlimited": ("不限", "unlimited"),
    "network_error": ("网络不通，请稍后再试。", "The network is not reachable; try again shortly."),
    "unauthenticated": ("令牌无效或已过期，请重新登录。", "The token is invalid or expired; sign in again."),
    "forbidden": ("这个令牌不能做这件事。", "This token may not do that."),
    "unexpected": ("出了点问题，请稍后再试。", "Something went wrong; try again later."),
    # status of a redemption
    "status_held": ("待核销", "Waiting for the counter"),
    "status_confirmed": ("已核销", "Confirmed"),
    "status_cancelled": ("已取消", "Cancelled"),
    "status_expired": ("已过期", "Expired"),
    # rider page
    "rider_title": ("我的积分", "My points"),
    "available": ("可用积分", "Available"),
    "held": ("冻结中", "On hold"),
    "earned_total": ("累计获得", "Earned in all"),
    "redeemed_total": ("已兑换", "Redeemed"),
    "my_redemptions": ("我的兑换", "My redemptions"),
    "show_code": ("到店出示此码", "Show this code at the counter"),
    "expires_in": ("剩余有效时间", "Valid for"),
    "expired_now": ("已过期", "Expired"),
    "cancel_redemption": ("取消兑换", "Cancel redemption"),
    "cancelled_ok": ("已取消，积分已退回。", "Cancelled; the points are back."),
    "qr_alt": ("兑换二维码", "Redemption QR code"),
    "catalogue": ("可兑换奖励", "Rewards"),
    "kind_merchant": ("暖“新”商家", "Warm merchants"),
    "kind_hospital": ("暖“新”医院", "Warm hospitals"),
    "kind_barber": ("快剪", "Barbers"),
    "cost": ("所需积分", "Cost"),
    "stock_left": ("本月剩余", "Left this month"),
    "per_rider_limit": ("每人每月限兑", "Per rider a month"),
    "short_by": ("还差 {n} 分", "{n} points short"),
    "redeem": ("兑换", "Redeem"),
    "confirm_title": ("确认兑换", "Confirm redemption"),
    "confirm_text": (
        "用 {cost} 分兑换「{title}」（{partner}）？积分先冻结，商家核销后扣除；未核销可取消或到期退回。",
        "Spend {cost} points on “{title}” ({partner})? The points are held until the partner confirms; "
        "cancel, or let it expire, and they come back.",
    ),
    "confirm_yes": ("确认兑换", "Redeem"),
    "redeemed_ok": ("兑换成功，请到店出示兑换码。", "Done: show the code at the counter."),
    "history": ("积分明细", "Points history"),
    "rule": ("规则", "rule"),
    "more": ("加载更多", "Load more"),
    "earned_zero": ("本次未得分", "no points this time"),
    "kind_award": ("获得", "Earned"),
    "kind_adjustment": ("人工调整", "Adjustment"),
    "kind_hold": ("兑换冻结", "Held for a reward"),
    "kind_release": ("积分退回", "Returned"),
    "kind_redeem": ("兑换核销", "Redeemed"),
    "kind_expire": ("到期退回", "Hold expired"),
    "cat_volunteer_service": ("志愿服务类", "Volunteer service"),
    "cat_civic_practice": ("文明实践类", "Civic practice"),
    "cat_activity_participation": ("活动参与类", "Activity participation"),
    "cat_grassroots_governance": ("基层治理类", "Grassroots governance"),
    "cat_safe_riding": ("安全骑行类", "Safe riding"),
    "cat_skill_development": ("技能提升类", "Skill development"),
    "cat_publicity_outreach": ("宣传引导类", "Publicity and outreach"),
    "cat_honors": ("荣誉表彰类", "Honours"),
    "err_insufficient-points": ("积分不足，暂时不能兑换这项奖励。", "Not enough points for this reward yet."),
    "err_out-of-stock": ("本月已兑完，下个月再来。", "None left this month; come back next month."),
    "err_monthly-limit-reached": ("您本月已达到这项奖励的兑换上限。", "You reached this reward's monthly limit."),
    "err_reward-inactive": ("这项奖励暂停兑换。", "This reward is not offered at the moment."),
    "err_reward-unknown": ("找不到这项奖励。", "This reward does not exist."),
    # partner page
    "partner_title": ("商家核销", "Partner counter"),
    "code_label": ("兑换码", "Code"),
    "code_help": (
        "输入骑手手机上的 8 位兑换码（不含 0、O、1、I、L），或粘贴扫码得到的内容。",
        "Type the 8-character code on the rider's phone (no 0, O, 1, I or L), or paste the scanned QR text.",
    ),
    "look_up": ("查询", "Look up"),
    "reward": ("奖励", "Reward"),
    "rider": ("骑手", "Rider"),
    "expires_at": ("有效期至", "Valid until"),
    "confirm_code": ("确认核销", "Confirm"),
    "confirmed_ok": ("核销成功：{title}，{cost} 分。", "Confirmed: {title}, {cost} points."),
    "err_code-unknown": (
        "没有找到这个兑换码。请核对骑手手机上的号码；连续输错 5 次需等待 15 分钟。",
        "No such code. Check it against the rider's phone; after 5 wrong codes you wait 15 minutes.",
    ),
    "err_code-expired": (
        "这个兑换码已过期，积分已退回骑手。请骑手重新兑换。",
        "This code has expired and the points went back to the rider. Ask the rider to redeem again.",
    ),
    "err_already-confirmed": (
        "这个兑换码已经核销过了，不能重复使用。",
        "This code was already used at the counter; it cannot be used twice.",
    ),
    "err_already-cancelled": ("骑手已取消这次兑换。", "The rider cancelled this redemption."),
    "err_too-many-wrong-codes": (
        "输错次数太多，请 {n} 秒后再试，并与骑手核对兑换码。",
        "Too many wrong codes: try again in {n} seconds and check the code with the rider.",
    ),
    "err_invalid-code": (
        "兑换码是 8 位字母和数字，请核对后重新输入。",
        "A code is 8 letters and digits; check it and type it again.",
    ),
    "recent": ("最近兑换", "Recent redemptions"),
    "refresh": ("刷新", "Refresh"),
    "settlement": ("月度结算", "Monthly settlement"),
    "month": ("月份", "Month"),
    "show": ("查看", "Show"),
    "settlement_sum": ("{month}：核销 {n} 笔，共 {points} 分", "{month}: {n} confirmed, {points} points in all"),
}


def words(lang: Lang) -> dict[str, str]:
    index = LANGS.index(lang)
    return {key: pair[index] for key, pair in WORDS.items()}
