"""`warmbee`: run the whole system locally, migrate, mint tokens, run the demo, serve one service."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvloop

from libs.platform.auth import Role, mint_token
from libs.platform.db import Database, apply_migrations
from libs.platform.errors import DomainError
from libs.platform.logging import configure_logging
from libs.platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from libs.platform.localstack import LocalStack
    from services.points.domain.reconcile import Report
    from services.points.domain.rules import Rules
    from services.points.queries import AwardRow
    from services.points.replay import ReplayReport, WhatIfReport

SERVICES = (
    "events",
    "points-api",
    "points-worker",
    "redemption",
    "pages",
    "notifications",
    "notifications-worker",
    "gateway",
)

app = typer.Typer(
    help="warmbee: points and rewards for delivery riders.", no_args_is_help=True, pretty_exceptions_enable=False
)
serve_app = typer.Typer(help="Serve one HTTP service in the foreground.", no_args_is_help=True)
worker_app = typer.Typer(help="Run one worker in the foreground.", no_args_is_help=True)
rules_app = typer.Typer(help="Check, publish and try out rules files.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(worker_app, name="worker")
app.add_typer(rules_app, name="rules")
outbox_app = typer.Typer(help="Outbox rows the relays parked, and putting them back.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


async def prepare_database(settings: Settings) -> None:
    """Locally and in tests (an admin credential): the owner and application roles and the database,
    created if missing, an older database handed to the owner. Then, as the owner: apply migrations,
    publish the default rules if none are stored. Production's migrate job has only the owner credential."""
    from libs.platform.roles import provision
    from services.points.handlers import seed_rules
    from services.points.rules_files import DEFAULT_RULES_FILE, read_rules_file

    if settings.pg_admin_server:
        await provision(settings)
    await asyncio.to_thread(apply_migrations, settings)
    path = Path(settings.default_rules_file) if settings.default_rules_file else DEFAULT_RULES_FILE
    db = Database(settings.as_owner())
    await db.open()
    try:
        await seed_rules(db, read_rules_file(path), published_by="warmbee migrate")
    finally:
        await db.close()


@app.command()
def migrate() -> None:
    """Create the database if needed, apply pending migrations, publish the default rules."""
    settings = get_settings()
    configure_logging(settings.log_level, "migrate")
    asyncio.run(prepare_database(settings))
    typer.echo(f"database {settings.pg_database} is migrated")


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="source, rider, partner or operator")],
    sub: Annotated[str, typer.Option(help="who: the source, rider, partner or operator id")],
    ttl_days: Annotated[int, typer.Option(min=1, max=365)] = 30,
) -> None:
    """Mint a local bearer token (HS256 with the configured secret)."""
    typer.echo(mint_token(get_settings(), role, sub, ttl_days * 24 * 3600))


@serve_app.command("events")
def serve_events() -> None:
    """The events service (POST /v1/events) with its outbox relay."""
    from services.events.bootstrap import build_app

    _serve(build_app, "events", get_settings().events_port)


@serve_app.command("points")
def serve_points() -> None:
    """The points API (balances, history, event status, adjustments, rules)."""
    from services.points.bootstrap import build_app

    _serve(build_app, "points", get_settings().points_port)


def quiet_garbage_collector() -> None:
    """Keep the cyclic garbage collector out of request latency: what start-up built (modules, the app,
    its routes and models) is moved out of its sight, and it runs less often. Requests make few cycles;
    a full collection over every start-up object took tens of milliseconds, the tail of a balance read."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _serve(build: object, name: str, port: int) -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level, name)
    application = build(settings)  # type: ignore[operator]
    quiet_garbage_collector()
    uvicorn.run(
        application,
        host=settings.host,
        port=port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@serve_app.command("redemption")
def serve_redemption() -> None:
    """The redemption service (catalogue, holds, partner confirmations) with its expiry sweep."""
    from services.redemption.bootstrap import build_app

    _serve(build_app, "redemption", get_settings().redemption_port)


@serve_app.command("pages")
def serve_pages() -> None:
    """The rider's phone page (/rider), the partner's counter page (/partner), the operator's console (/operator)."""
    from services.pages.bootstrap import build_app

    _serve(build_app, "pages", get_settings().pages_port)


@serve_app.command("notifications")
def serve_notifications() -> None:
    """The notifications API: webhook subscriptions and their deliveries."""
    from services.notifications.bootstrap import build_app

    _serve(build_app, "notifications", get_settings().notifications_port)


@worker_app.command("notifications")
def worker_notifications() -> None:
    """The notifications worker (faust-streaming): points-ledger to signed webhook deliveries and rider notices."""
    from services.notifications.entrypoints.consumer import run_worker

    settings = get_settings()
    configure_logging(settings.log_level, "notifications-worker")
    run_worker(settings)


@worker_app.command("notifications-sender")
def worker_notifications_sender() -> None:
    """A webhook sender of its own, beside the notifications worker (run as many as the deliveries need)."""
    from services.notifications.entrypoints.sending import run_sender

    settings = get_settings()
    configure_logging(settings.log_level, "notifications-sender")
    uvloop.run(run_sender(settings))


@app.command()
def gateway() -> None:
    """A local stand-in for the sub-district's SMS/WeChat gateway: prints the rider notices it receives."""
    import uvicorn

    from services.gateway import build_gateway

    settings = get_settings()
    configure_logging(settings.log_level, "gateway")
    uvicorn.run(
        build_gateway(settings.notify_gateway_secret),
        host=settings.host,
        port=settings.notify_gateway_port,
        log_config=None,
        access_log=False,
    )


@worker_app.command("points")
def worker_points() -> None:
    """The points worker: scores activity-events into the ledger."""
    from services.points.bootstrap import run_worker

    settings = get_settings()
    configure_logging(settings.log_level, "points-worker")
    uvloop.run(run_worker(settings))


@app.command()
def demo() -> None:
    """Publish the demo events to a running stack and print what the riders see."""
    from services.demo import run_demo

    settings = get_settings()
    configure_logging("WARNING", "demo")
    report = asyncio.run(run_demo(settings))
    for line in report.lines:
        typer.echo(line)


@app.command()
def run(
    demo: Annotated[bool, typer.Option(help="publish the demo events once the services are ready")] = True,
    log_dir: Annotated[Path, typer.Option(help="where each process writes its log")] = Path(".run/logs"),
) -> None:
    """Run everything locally: broker, database, events service, points worker and API, then the demo.
    Ctrl-C stops everything it started."""
    settings = get_settings()
    configure_logging("WARNING", "run")
    asyncio.run(_run(settings, demo, log_dir))


async def _run(settings: Settings, with_demo: bool, log_dir: Path) -> None:
    from libs.platform.localstack import LocalStack

    stack = LocalStack(settings, log_dir)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    supervisor: asyncio.Task[None] | None = None
    notices: asyncio.Task[None] | None = None
    try:
        typer.echo("starting PostgreSQL check, database, broker ...")
        await stack.start_infrastructure(prepare_database)
        for name in SERVICES:
            stack.start_service(name)
        await stack.wait_healthy(list(SERVICES))
        prometheus = await _start_prometheus(stack)
        # From here a process that dies is restarted with back-off, as Kubernetes would, and said so.
        supervisor = asyncio.create_task(stack.supervise(typer.echo))
        typer.echo(f"services are up; logs in {log_dir}/ (a process that dies is restarted)")
        _print_access(settings, prometheus)
        if with_demo:
            from services.demo import run_demo

            report = await run_demo(settings)
            typer.echo("\ndemo:")
            for line in report.lines:
                typer.echo(f"  {line}")
        typer.echo(
            f"\nrider notices, as the local gateway receives them (awards are summed over "
            f"{settings.notice_award_window_s:g} s first):"
        )
        notices = asyncio.create_task(_echo_notices(settings))
        typer.echo("Ctrl-C stops everything.\n")
        await stopping.wait()
    finally:
        typer.echo("stopping ...")
        for task in (supervisor, notices):  # first, so nothing stopped below is started again
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(stack.stop_all)
        typer.echo("stopped.")


async def _echo_notices(settings: Settings, every_s: float = 2.0) -> None:
    """Print each notice the local gateway took, once, as it arrives (the gateway lists what it took)."""
    import httpx

    seen: set[str] = set()
    url = f"http://{settings.host}:{settings.notify_gateway_port}/notices"
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                taken = (await http.get(url)).json()
            except (httpx.HTTPError, ValueError):
                taken = []  # the gateway restarting: the supervisor says so
            for notice in taken if isinstance(taken, list) else []:
                if notice.get("id") not in seen:
                    seen.add(notice.get("id"))
                    typer.echo(f"  【通知】{notice.get('rider_id')} {notice.get('kind')}: {notice.get('text')}")
                    typer.echo(f"         {notice.get('text_en')}")
            await asyncio.sleep(every_s)


async def _start_prometheus(stack: LocalStack) -> str:
    """Prometheus scraping the services (deploy/prometheus/); without the binary the rest still runs."""
    try:
        url = await stack.start_prometheus()
    except FileNotFoundError as exc:
        return f"not started: {exc}"
    return f"{url}   (graph: {url}/graph, alerts: {url}/alerts)"


def _print_access(settings: Settings, prometheus: str) -> None:
    rider = mint_token(settings, Role.RIDER, "rider-1001")
    operator = mint_token(settings, Role.OPERATOR, "ops-demo")
    points = f"http://{settings.host}:{settings.points_port}"
    events = f"http://{settings.host}:{settings.events_port}"
    redemption = f"http://{settings.host}:{settings.redemption_port}"
    partner = mint_token(settings, Role.PARTNER, "laowang-noodles")
    pages = f"http://{settings.host}:{settings.pages_port}"
    notifications = f"http://{settings.host}:{settings.notifications_port}"
    typer.echo(f"""
  events service   {events}   (OpenAPI: {events}/docs)
  points API       {points}   (OpenAPI: {points}/docs)
  redemption       {redemption}   (OpenAPI: {redemption}/docs)
  notifications    {notifications}   (OpenAPI: {notifications}/docs)
  worker metrics   http://{settings.host}:{settings.worker_metrics_port}/metrics (points), \
http://{settings.host}:{settings.notifications_worker_metrics_port}/metrics (notifications)
  notice gateway   http://{settings.host}:{settings.notify_gateway_port}/notices   (stands in for the SMS/WeChat one)
  Prometheus       {prometheus}
  broker           {settings.kafka_bootstrap}   database {settings.database_url}

  rider token (rider-1001):
    export RIDER_TOKEN={rider}
  operator token:
    export OPERATOR_TOKEN={operator}
  partner token (laowang-noodles):
    export PARTNER_TOKEN={partner}

  rider's page (rider-1001)        {pages}/rider#token={rider}
  partner's page (laowang-noodles) {pages}/partner#token={partner}
  (English: add ?lang=en before the #)
  operator's console               {pages}/operator   (paste the operator token above to sign in)

  curl -s -H "Authorization: Bearer $RIDER_TOKEN" {points}/v1/riders/rider-1001/balance
  curl -s -H "Authorization: Bearer $RIDER_TOKEN" {points}/v1/riders/rider-1001/entries
  curl -s -H "Authorization: Bearer $RIDER_TOKEN" {redemption}/v1/rewards
  curl -s -H "Authorization: Bearer $PARTNER_TOKEN" \\
       "{redemption}/v1/partner/settlement?month=$(TZ=Asia/Shanghai date +%Y-%m)"
""")


RulesFile = Annotated[Path, typer.Argument(help="a rules file (YAML), e.g. rules/warmbee-default.v1.yaml")]


def _read_rules(path: Path) -> Rules:
    from services.points.rules_files import RulesFileError, read_rules_file

    try:
        return read_rules_file(path)
    except RulesFileError as exc:
        typer.echo(f"{path}: {len(exc.problems)} problem(s)", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from exc


def _read_rules_text(text: str) -> Rules:
    from services.points.rules_files import RulesFileError, parse_rules

    try:
        return parse_rules(text, "-")
    except RulesFileError as exc:
        typer.echo(f"-: {len(exc.problems)} problem(s)", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from exc


@rules_app.command("check")
def rules_check(path: RulesFile) -> None:
    """Validate a rules file and report every problem with its location."""
    rules = _read_rules(path)
    categories = rules.categories.model_dump(exclude_none=True)
    typer.echo(
        f"{path}: valid — {rules.rules_id} v{rules.version}, effective {rules.effective_from.isoformat()}, "
        f"{len(categories)} categories; {_lapse_words(rules)}"
    )


def _lapse_words(rules: Rules) -> str:
    """What a version's lapse policy says, in a sentence."""
    policy = rules.lapse
    if policy is None:
        return "points awarded under it never lapse"
    if policy.after_months is not None:
        return f"points lapse at the end of month {policy.after_months} after the award's month ({rules.timezone})"
    return f"points lapse on 31 December, {policy.end_of_year_after} year(s) after the award's year ({rules.timezone})"


@rules_app.command("publish")
def rules_publish(path: RulesFile) -> None:
    """Store a new rules version; it takes effect at its effective date, without a restart."""
    from datetime import timedelta

    from services.points.handlers import RulesRefused, publish_rules

    settings = get_settings()
    configure_logging("WARNING", "rules")
    rules = _read_rules(path)

    async def go() -> None:
        db = Database(settings)
        await db.open()
        try:
            await publish_rules(db, rules, "warmbee rules publish", timedelta(seconds=settings.rules_min_lead_s))
        finally:
            await db.close()

    try:
        asyncio.run(go())
    except RulesRefused as exc:
        typer.echo(f"{path}: refused, nothing was stored", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"published {rules.rules_id} v{rules.version}, in force from {rules.effective_from.isoformat()}")


@rules_app.command("what-if")
def rules_what_if(
    path: RulesFile,
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (Asia/Shanghai)")],
    end: Annotated[str, typer.Option("--to", help="day after the last, YYYY-MM-DD (Asia/Shanghai)")],
    top: Annotated[int, typer.Option(help="riders to list")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole report as JSON instead")] = False,
) -> None:
    """Score the stored events of a period with a candidate rules file (`-`: read it from stdin), writing
    nothing, and show what it would change per category and for the riders most affected."""
    from libs.activity.model import load_schemas
    from services.points.replay import report_json, what_if, what_if_period

    settings = get_settings()
    configure_logging("WARNING", "rules")
    candidate = _read_rules_text(sys.stdin.read()) if str(path) == "-" else _read_rules(path)
    try:
        period = what_if_period(candidate.zone, date.fromisoformat(start), date.fromisoformat(end))
    except (ValueError, DomainError) as exc:
        typer.echo(f"--from/--to: {exc}", err=True)
        raise typer.Exit(1) from exc

    async def go() -> WhatIfReport:
        db = Database(settings)
        await db.open()
        try:
            return await what_if(db, settings, load_schemas(), candidate, *period, _progress("what-if"))
        finally:
            await db.close()

    report = asyncio.run(go())
    if as_json:
        sys.stdout.buffer.write(report_json(report))
        return
    typer.echo(
        f"what if {candidate.rules_id} v{candidate.version} had applied to the {report.events} events of "
        f"{start} to {end} (both runs from empty counters; nothing written)\n"
    )
    typer.echo(f"{'category':<24}{'events':>8}{'in force':>10}{'candidate':>11}{'change':>9}")
    for name, c in sorted(report.categories.items()):
        typer.echo(f"{name:<24}{c.events:>8}{c.current:>10}{c.candidate:>11}{c.candidate - c.current:>+9}")
    change = report.total_candidate - report.total_current
    typer.echo(f"{'total':<24}{report.events:>8}{report.total_current:>10}{report.total_candidate:>11}{change:>+9}")
    for side, lapsing in (("in force", report.lapsing_current), ("candidate", report.lapsing_candidate)):
        days = ", ".join(f"{n} after {d.isoformat()}" for d, n in lapsing.items()) or "none"
        typer.echo(f"points that would lapse, {side}: {days}")
    if report.riders:
        typer.echo(f"\nriders most affected (of {len(report.riders)} whose points change):")
        for rider, before, after in report.riders[:top]:
            typer.echo(f"  {rider:<24}{before:>8} -> {after:<8}({after - before:+})")


def _progress(command: str, every: int = 10_000) -> Callable[[int], None]:
    """Say on stderr how far a long replay or what-if has come, every ``every`` events (live scoring goes on
    meanwhile: the run takes none of its locks)."""
    said = 0

    def tell(scored: int) -> None:
        nonlocal said
        if scored - said >= every:
            said = scored
            typer.echo(f"{command}: {scored} events scored so far", err=True)

    return tell


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(help="a backlog: one CloudEvent (JSON) a line", exists=True, dir_okay=False)],
    token: Annotated[
        str | None,
        typer.Option(envvar="WARMBEE_SOURCE_TOKEN", help="over http: a bearer token of role source (sub = source)"),
    ] = None,
    url: Annotated[str | None, typer.Option(help="the events service; default: this host's, from the settings")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="events a request (the service takes 1,000)")] = 1000,
    over: Annotated[str, typer.Option(help="http or kafka (the WARMBEE_KAFKA_* settings)")] = "http",
) -> None:
    """Send a source's backlog in batches, with a progress bar and a summary: accepted, duplicates, refused
    with their reasons. A line that is not JSON is reported with its number; the rest still go. Exits 1
    when anything was refused, unreadable or not delivered."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.publishing import Over, publish_backlog

    try:
        channel = Over(over)
    except ValueError as exc:
        typer.echo(f"--over: http or kafka, not {over!r}", err=True)
        raise typer.Exit(2) from exc
    if channel is Over.HTTP and not token:
        typer.echo("--token (or WARMBEE_SOURCE_TOKEN) is needed over http: a token of role source", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    configure_logging("WARNING", "publish")
    with file.open("rb") as f:
        total = sum(1 for raw in f if raw.strip())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(f"publishing {file.name}", total=total)
        summary = asyncio.run(
            publish_backlog(
                file,
                channel,
                url=url or f"http://{settings.host}:{settings.events_port}",
                token=token,
                batch_size=batch_size,
                settings=settings,
                advance=lambda n: progress.advance(task, n),
            )
        )
    for line in summary.report():
        typer.echo(line)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def replay() -> None:
    """Rebuild every award from the stored events, in memory and in the order first scored, and compare
    with the live ledger entry by entry (one read-only snapshot; nothing is written). Exits 1 on any
    difference."""
    from libs.activity.model import load_schemas
    from services.points.replay import replay as run_replay

    settings = get_settings()
    configure_logging("WARNING", "replay")

    async def go() -> ReplayReport:
        db = Database(settings)
        await db.open()
        try:
            return await run_replay(db, settings, load_schemas(), _progress("replay"))
        finally:
            await db.close()

    report = asyncio.run(go())
    for d in report.differences[:50]:
        typer.echo(
            f"  {d.key[0]} {d.key[1]}\n    live:     {_award_line(d.live)}\n    replayed: {_award_line(d.replayed)}"
        )
    if report.differences:
        typer.echo(f"replay: {len(report.differences)} of {report.compared} awards differ", err=True)
        raise typer.Exit(1)
    typer.echo(f"replay: {report.compared} awards rebuilt from the stored events, identical to the live ledger")


def _award_line(row: AwardRow | None) -> str:
    if row is None:
        return "no award"
    lapses = f", lapses after {row.lapses_on}" if row.lapses_on else ""
    rule = f"{row.rule_id} v{row.rule_version}" if row.rule_id else "no rules"
    return f"{row.rider_id}: {row.points} ({row.category}; {rule}{lapses}): {row.reason.render('en')}"


def _aware_time(text: str | None) -> datetime | None:
    """An ISO 8601 time with its zone (a time without one would be read in some zone nobody chose)."""
    if text is None:
        return None
    try:
        if not text.strip().isprintable():  # fromisoformat stops at a NUL and reads the rest as nothing
            raise ValueError(text)
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00+08:00") from None
    if at.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no time zone: add one, e.g. {text.strip()}+08:00")
    try:
        return at.astimezone(UTC)  # the database's clock; 9999-12-31T23:59-14:00 is past year 9999 there
    except OverflowError:
        raise typer.BadParameter(f"{text!r} is out of range: give a time between the years 1 and 9999") from None


@app.command()
def reconcile(
    stuck_after: Annotated[int, typer.Option(help="seconds after which an accepted, unscored event is stuck")] = 300,
    since: Annotated[
        str | None,
        typer.Option(
            help="check only what changed since this time (ISO 8601 with its zone, e.g. 2026-12-01T00:00:00+08:00):"
            " the entries recorded since and the whole history of the riders they touched",
        ),
    ] = None,
) -> None:
    """Check the whole database: balanced entries, balances equal to postings, never negative, awards
    grounded in events and rules, redemptions matching their entries, no accepted event left unscored.
    Exits 1 on any mismatch. With --since, what changed since then only (as the worker's runs between
    its daily whole ones)."""
    from services.points.handlers import reconcile as run_reconcile

    changed_since = _aware_time(since)
    settings = get_settings()
    configure_logging("WARNING", "reconcile")

    async def go() -> Report:
        db = Database(settings)
        await db.open()
        try:
            return await run_reconcile(db, stuck_after, since=changed_since)
        finally:
            await db.close()

    report = asyncio.run(go())
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def lapse() -> None:
    """Run the lapse job once now, as the points worker does every WARMBEE_LAPSE_INTERVAL_S: every lot
    past its last good day lapses what is left of it (once: another run, or a worker at the same moment,
    lapses nothing twice), then riders are warned of what lapses within 30 days. Never a lot not yet due."""
    from services.points.lapsing import lapse_due, warn_riders

    settings = get_settings()
    configure_logging("WARNING", "lapse")

    async def go() -> tuple[int, int, int]:
        db = Database(settings)
        await db.open()
        try:
            lapses, points = await lapse_due(db, settings)
            warnings = 0
            while (sent := await warn_riders(db, settings)) > 0:
                warnings += sent
            return lapses, points, warnings
        finally:
            await db.close()

    lapses, points, warnings = asyncio.run(go())
    typer.echo(
        f"lapsed {lapses} lot(s), {points} point(s); warned {warnings} rider-day(s) of points lapsing within 30 days"
    )


@outbox_app.command("parked")
def outbox_parked(
    topic: Annotated[str | None, typer.Option(help="only this topic")] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows to list, oldest first")] = 100,
) -> None:
    """List the outbox rows a relay parked because they can never be published as they are (too large
    for the producer, refused by the broker, a reference that cannot be rendered), with the reason."""
    from libs.platform.outbox_store import OutboxStore, ParkedRow

    settings = get_settings()
    configure_logging("WARNING", "outbox")

    async def go() -> list[ParkedRow]:
        db = Database(settings)
        await db.open()
        try:
            async with db.read() as conn:
                return await OutboxStore(conn).parked(topic, limit)
        finally:
            await db.close()

    rows = asyncio.run(go())
    if not rows:
        typer.echo("no parked outbox rows")
        return
    typer.echo(f"{'outbox_id':>10}  {'topic':<22}{'key':<26}{'bytes':>10}  {'parked_at':<26}reason")
    for r in rows:
        key = "-" if r.key is None else r.key.decode(errors="replace")
        key = key if len(key) <= 24 else key[:23] + "…"
        parked_at = r.parked_at.isoformat(timespec="seconds")
        typer.echo(f"{r.outbox_id:>10}  {r.topic:<22}{key:<26}{r.size:>10}  {parked_at:<26}{r.reason}")
    typer.echo(f"{len(rows)} parked row(s); `warmbee outbox retry <outbox_id>` puts one back once its cause is fixed")


@outbox_app.command("retry")
def outbox_retry(
    outbox_ids: Annotated[list[int] | None, typer.Argument(help="the parked rows to put back")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="every parked row")] = False,
) -> None:
    """Put parked rows back in line after a fix (a raised broker limit, a renderer fixed): the relay
    publishes them next, or parks them again with the new reason. Exits 1 if a row was not parked."""
    from libs.platform.outbox_store import OutboxStore

    if not outbox_ids and not all_rows:
        typer.echo("name the rows to retry, or --all", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    configure_logging("WARNING", "outbox")

    async def go() -> list[int]:
        db = Database(settings)
        await db.open()
        try:
            return await db.run(lambda conn: OutboxStore(conn).unpark(None if all_rows else outbox_ids))
        finally:
            await db.close()

    unparked = asyncio.run(go())
    typer.echo(f"back in line: {', '.join(map(str, unparked)) or 'none'}")
    missing = sorted(set(outbox_ids or []) - set(unparked))
    if missing and not all_rows:
        typer.echo(f"not parked (relayed, unknown, or not parked now): {', '.join(map(str, missing))}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
