"""`warmbee`: run the whole system locally, migrate, mint tokens, run the demo, serve one service."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
import uvloop

from libs.platform.auth import Role, mint_token
from libs.platform.db import Database, apply_migrations, ensure_database
from libs.platform.logging import configure_logging
from libs.platform.settings import Settings, get_settings

app = typer.Typer(
    help="warmbee: points and rewards for delivery riders.", no_args_is_help=True, pretty_exceptions_enable=False
)
serve_app = typer.Typer(help="Serve one HTTP service in the foreground.", no_args_is_help=True)
worker_app = typer.Typer(help="Run one worker in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(worker_app, name="worker")


async def prepare_database(settings: Settings) -> None:
    """Create the database if missing, apply migrations, publish the default rules if none are stored."""
    from services.points.handlers import publish_rules
    from services.points.rules_files import DEFAULT_RULES_FILE, read_rules_file

    await ensure_database(settings)
    await asyncio.to_thread(apply_migrations, settings)
    path = Path(settings.default_rules_file) if settings.default_rules_file else DEFAULT_RULES_FILE
    db = Database(settings)
    await db.open()
    try:
        await publish_rules(db, read_rules_file(path), published_by="warmbee migrate")
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


def _serve(build: object, name: str, port: int) -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level, name)
    application = build(settings)  # type: ignore[operator]
    uvicorn.run(
        application,
        host=settings.host,
        port=port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@worker_app.command("points")
def worker_points() -> None:
    """The points worker: scores activity-events into the ledger."""
    from services.points.entrypoints.consumer import run_worker

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
    try:
        typer.echo("starting PostgreSQL check, database, broker ...")
        await stack.start_infrastructure(prepare_database)
        for name in ("events", "points-api", "points-worker"):
            stack.start_service(name)
        await stack.wait_healthy(["events", "points-api", "points-worker"])
        typer.echo(f"services are up; logs in {log_dir}/")
        _print_access(settings)
        if with_demo:
            from services.demo import run_demo

            report = await run_demo(settings)
            typer.echo("\ndemo:")
            for line in report.lines:
                typer.echo(f"  {line}")
        typer.echo("\nCtrl-C stops everything.")
        await stopping.wait()
    finally:
        typer.echo("stopping ...")
        await asyncio.to_thread(stack.stop_all)
        typer.echo("stopped.")


def _print_access(settings: Settings) -> None:
    rider = mint_token(settings, Role.RIDER, "rider-1001")
    operator = mint_token(settings, Role.OPERATOR, "ops-demo")
    points = f"http://{settings.host}:{settings.points_port}"
    events = f"http://{settings.host}:{settings.events_port}"
    typer.echo(f"""
  events service   {events}   (OpenAPI: {events}/docs)
  points API       {points}   (OpenAPI: {points}/docs)
  worker metrics   http://{settings.host}:{settings.worker_metrics_port}/metrics
  broker           {settings.kafka_bootstrap}   database {settings.database_url}

  rider token (rider-1001):
    export RIDER_TOKEN={rider}
  operator token:
    export OPERATOR_TOKEN={operator}

  curl -s -H "Authorization: Bearer $RIDER_TOKEN" {points}/v1/riders/rider-1001/balance
  curl -s -H "Authorization: Bearer $RIDER_TOKEN" {points}/v1/riders/rider-1001/entries""")


if __name__ == "__main__":
    app()
