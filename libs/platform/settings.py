"""Typed configuration from environment variables (prefix ``WARMBEE_``), with local defaults."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_JWT_SECRET = "warmbee-local-development-secret-change-me"  # noqa: S105 - refused outside env=local
# The key that seals webhook secrets at rest (a Fernet key); the notifications service refuses it in
# production (services/notifications/sealing.py). The other services never read it.
LOCAL_NOTIFY_SECRET_KEY = "d2FybWJlZS1sb2NhbC1ub3RpZnkta2V5LWNoYW5nZW0="  # noqa: S105
# Signs rider notices to the local gateway (`warmbee gateway`); refused in production.
LOCAL_NOTIFY_GATEWAY_SECRET = "whsec_d2FybWJlZS1sb2NhbC1ub3RpY2UtZ2F0ZXdheQ=="  # noqa: S105
# Creates the roles and the database on a developer's machine and in tests; refused in production.
LOCAL_PG_ADMIN_SERVER = "postgresql://postgres@127.0.0.1:5432"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARMBEE_", env_file=None, extra="ignore")

    env: Literal["local", "test", "production"] = "local"

    # PostgreSQL: server URLs without a database (the role is the URL's user), and the database the
    # project owns. The services connect as pg_server, an application role that reads and appends the
    # ledger and can neither alter it nor switch its triggers off; migrations run as pg_owner_server, the
    # role that owns the tables. pg_admin_server (local and test only; unset: the local superuser, empty:
    # none) creates those two roles and the database; production provisions them beforehand.
    pg_server: str = "postgresql://warmbee_app@127.0.0.1:5432"
    pg_owner_server: str = "postgresql://warmbee_owner@127.0.0.1:5432"
    pg_admin_server: str | None = None
    pg_database: str = "warmbee"
    pg_pool_min: int = Field(default=1, ge=1)
    pg_pool_max: int = Field(default=10, ge=1)

    # Kafka (Apache Kafka in production; any Kafka-protocol broker locally).
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = False  # set true on Apache Kafka; the local broker lacks InitProducerId
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    topic_activity_events: str = "activity-events"
    topic_activity_events_dlq: str = "activity-events-dlq"
    topic_points_ledger: str = "points-ledger"
    topic_partitions: int = Field(default=8, ge=1)
    points_consumer_group: str = "warmbee-points"

    # Points worker batching: one PostgreSQL transaction per batch.
    worker_batch_max: int = Field(default=1000, ge=1, le=10_000)
    worker_batch_wait_ms: int = Field(default=200, ge=1)
    # Batches written at the same time, each from partitions of its own (so each partition, and each
    # rider, stays in order): one batch's Python work overlaps another's wait on PostgreSQL.
    worker_concurrency: int = Field(default=2, ge=1, le=16)
    worker_metrics_port: int = 8012
    # Stored events without an award after this long are scored from the database (a lost Kafka copy).
    pending_after_s: float = Field(default=30.0, gt=0)
    pending_sweep_interval_s: float = Field(default=10.0, gt=0)
    # The worker reconciles this often (seconds): what changed since its last clean run, and the whole
    # database at its start and every reconcile_full_interval_s. It calls an accepted event stuck when
    # it is still unscored after reconcile_stuck_after_s.
    reconcile_interval_s: float = Field(default=300.0, gt=0)
    reconcile_full_interval_s: float = Field(default=86400.0, gt=0)
    disputes_measure_interval_s: float = Field(default=30.0, gt=0)  # the open disputes' gauges
    # The lapse job: lots past their last good day lapse, riders are warned 30 days before (seconds).
    lapse_interval_s: float = Field(default=300.0, gt=0)
    reconcile_stuck_after_s: int = Field(default=300, ge=1)
    # Consumer group liveness: a worker that dies is replaced after this long.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1000)
    # How far ahead of the clock an event's time may be (clock skew at the source).
    event_future_slack_s: int = Field(default=300, ge=0)
    # Rules: a worker reloads the published versions at most this often (seconds), and a version may be
    # published no less than rules_min_lead_s ahead of its effective_from. The lead must exceed the
    # reload interval plus the future slack: a worker whose rules were loaded just before a publication
    # scores with them for up to one reload interval, events timed up to the slack ahead of its clock;
    # the rest of the lead covers the publishing transaction's commit and clocks that differ a little.
    rules_reload_s: float = Field(default=5.0, gt=0)
    rules_min_lead_s: float = Field(default=330.0, gt=0)

    # Outbox relay.
    relay_batch_max: int = Field(default=1000, ge=1)
    relay_idle_ms: int = Field(default=100, ge=1)
    # The largest message (key, value, headers, record overhead) the producer sends (its max_request_size);
    # the broker's own limit must be at least this. A relay parks an outbox row whose message is larger.
    kafka_max_request_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)

    # Redemption: how long a hold waits for the partner, and how many wrong codes a partner may try.
    redemption_hold_ttl_s: int = Field(default=24 * 3600, ge=1)
    redemption_expiry_sweep_s: float = Field(default=5.0, gt=0)
    confirm_failure_limit: int = Field(default=5, ge=1)
    confirm_failure_window_s: int = Field(default=900, ge=1)

    # Notifications (services/notifications): webhooks and rider notices.
    notifications_port: int = 8005
    notifications_worker_metrics_port: int = 8015
    notifications_sender_metrics_port: int = 8025  # warmbee worker notifications-sender
    # False where senders of their own (warmbee worker notifications-sender) send the webhooks: the worker records.
    notifications_worker_sends_webhooks: bool = True
    notifications_consumer_group: str = "warmbee-notifications"
    notify_secret_key: str = LOCAL_NOTIFY_SECRET_KEY  # Fernet key (32 bytes, url-safe base64)
    # Rider notices go to the sub-district's SMS/WeChat gateway, signed with its Standard Webhooks secret.
    # Unset: the local gateway (`warmbee gateway`, notify_gateway_port) in env local and test; in
    # production no notice is made until it is set.
    notify_gateway_url: str | None = None
    notify_gateway_secret: str = LOCAL_NOTIFY_GATEWAY_SECRET
    notify_gateway_port: int = 8016
    notice_award_window_s: float = Field(default=180.0, gt=0)  # a rider's awards within it make one notice
    notice_expiry_warning_s: int = Field(default=3600, ge=60)  # a held code is warned of this long before it expires
    notice_stale_after_s: int = Field(default=24 * 3600, ge=60)  # older events make no notice
    notice_rate_per_s: float = Field(default=100.0, gt=0)  # the most notices posted to the gateway a second
    # Done deliveries and notices are removed after this; keep it longer than the points-ledger topic's retention
    notifications_retention_days: int = Field(default=30, ge=1, le=3650)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)  # a 2xx within this delivers
    webhook_in_flight_per_subscription: int = Field(default=4, ge=1, le=64)  # one slow receiver waits alone
    webhook_in_flight: int = Field(default=64, ge=1, le=1024)
    webhook_retry_for_s: int = Field(default=26 * 3600, ge=60)  # then failed (the contract: at least 24 h)
    webhook_sender_interval_s: float = Field(default=0.5, gt=0)
    # Outside env=local webhooks go to https on the public internet only (server-side request forgery):
    # these networks (CIDR, JSON list) are allowed besides, e.g. a receiver on the sub-district's own
    # network; require_https off lets them take http.
    webhook_allowed_networks: list[str] = []
    webhook_require_https: bool = True

    # HTTP.
    host: str = "127.0.0.1"
    events_port: int = 8001
    points_port: int = 8002
    redemption_port: int = 8003
    # The rider's and the partner's pages (services/pages), which call the APIs above from the browser.
    pages_port: int = 8004
    # Browser origins allowed to call the APIs (CORS); unset: the pages service's own origin
    # (http://{host}:{pages_port} and http://localhost:{pages_port}). Set as JSON, e.g. '["https://a.example"]'.
    cors_origins: list[str] | None = None
    # Prometheus that `warmbee run` starts, scraping the services above.
    prometheus_port: int = 9090
    # Request body limits, refused with 413 before the body is read: the events service's (batches of
    # up to max_batch_events), and every other service's, whose requests are a few small fields.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_api_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_events: int = Field(default=1000, ge=1)

    # Auth (libs/platform/auth.py). Outside env=local, tokens come from the programme's OpenID provider only:
    # auth_issuer is its issuer URL (its /.well-known/openid-configuration names the JWKS), auth_audience
    # the `aud` its access tokens carry for warmbee, auth_role_claim the claim that holds the warmbee role
    # (a string, or a list holding exactly one warmbee role; a dotted path reaches into an object, e.g.
    # realm_access.roles). exp, nbf and iat are checked with auth_leeway_s of clock difference.
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_role_claim: str = Field(default="role", min_length=1)
    auth_algorithms: list[Literal["RS256", "ES256", "EdDSA"]] = ["RS256", "ES256", "EdDSA"]
    auth_leeway_s: int = Field(default=30, ge=0, le=300)
    # A token signed by a key (kid) the cached JWKS lacks makes it be read again, at most this often:
    # tokens with made-up kids cannot make every request fetch from the provider.
    auth_jwks_min_refresh_s: float = Field(default=60.0, gt=0)
    # The JWKS is also read again (in the background, the old one serving meanwhile) once it is this old,
    # so a key the provider removed stops being trusted within about this long.
    auth_jwks_max_age_s: float = Field(default=300.0, gt=0)
    auth_fetch_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # The operator console's client at that provider (a public client: authorization code with PKCE, its
    # redirect URI the console's own address, /operator). Set with auth_issuer and auth_audience, the
    # console offers to sign in there; a pasted token works either way.
    console_client_id: str | None = Field(default=None, min_length=1, max_length=200)
    # HS256 with a shared secret: env=local only (`warmbee token`, `make run`, the tests' shared stack).
    jwt_secret: str = LOCAL_JWT_SECRET
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"

    # Rules: the default rules file, published at migrate time when no version is stored.
    default_rules_file: str | None = None
    # POST /v1/rules/what-if scores every event of its period twice, in one long read transaction:
    # at most this many days at once (a quarter).
    rules_what_if_max_days: int = Field(default=93, ge=1, le=3660)
    # POST /v1/rules/what-if scores in a process of its own (CPU-bound for seconds, it would hold the API's
    # event loop and every balance read with it); one that takes longer than this is stopped.
    rules_what_if_timeout_s: float = Field(default=600.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_shared_secret_tokens_outside_local(self) -> Settings:
        if self.env != "local" and not (self.auth_issuer and self.auth_audience):
            raise ValueError(
                f"WARMBEE_AUTH_ISSUER and WARMBEE_AUTH_AUDIENCE must be set in env={self.env}: HS256 tokens with a "
                "shared secret are taken only where WARMBEE_ENV=local; elsewhere tokens come from the OpenID provider"
            )
        if self.env == "production" and self.auth_issuer and urlsplit(self.auth_issuer).scheme != "https":
            raise ValueError("WARMBEE_AUTH_ISSUER must be an https URL in production (its keys are fetched from it)")
        return self

    @model_validator(mode="after")
    def _refuse_local_secret_in_production(self) -> Settings:
        if (
            self.env == "production"
            and self.notify_gateway_url
            and self.notify_gateway_secret == LOCAL_NOTIFY_GATEWAY_SECRET
        ):
            raise ValueError(
                "WARMBEE_NOTIFY_GATEWAY_SECRET must be set in production (the gateway's whsec_ secret): "
                "the local one is public"
            )
        return self

    @model_validator(mode="after")
    def _refuse_a_rules_lead_a_cached_worker_could_miss(self) -> Settings:
        shortest = self.rules_reload_s + self.event_future_slack_s
        if self.rules_min_lead_s <= shortest:
            raise ValueError(
                f"WARMBEE_RULES_MIN_LEAD_S ({self.rules_min_lead_s:g}) must be more than WARMBEE_RULES_RELOAD_S "
                f"({self.rules_reload_s:g}) plus WARMBEE_EVENT_FUTURE_SLACK_S ({self.event_future_slack_s}): "
                "a worker that loaded the rules just before a publication would score events after the new "
                "version's effective time by the old one"
            )
        return self

    @model_validator(mode="after")
    def _refuse_roles_that_defeat_least_privilege(self) -> Settings:
        for name in ("pg_server", "pg_owner_server"):
            if not urlsplit(getattr(self, name)).username:
                raise ValueError(f"WARMBEE_{name.upper()} must name its role: postgresql://ROLE[:PASSWORD]@HOST:PORT")
        if self.env == "production":
            if self.app_role == self.owner_role:
                raise ValueError(
                    "WARMBEE_PG_SERVER and WARMBEE_PG_OWNER_SERVER name the same role: in production the services "
                    "must not connect as the role that owns the tables (it could alter them and disable triggers)"
                )
            if self.pg_admin_server:
                raise ValueError(
                    "WARMBEE_PG_ADMIN_SERVER is for local and test only: in production roles and the database are "
                    "provisioned beforehand (deploy/postgres/roles.sql)"
                )
        elif self.pg_admin_server is None:
            self.pg_admin_server = LOCAL_PG_ADMIN_SERVER
        return self

    def as_env(self) -> dict[str, str]:
        """These settings as WARMBEE_* variables, so a child process sees exactly the same."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                if isinstance(value, list):
                    env[f"WARMBEE_{name.upper()}"] = json.dumps(value)  # how pydantic-settings reads a list
                else:
                    env[f"WARMBEE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    @property
    def allowed_origins(self) -> list[str]:
        """The browser origins that may call the APIs: ``cors_origins``, or the pages service's own."""
        if self.cors_origins is not None:
            return self.cors_origins
        return [f"http://{self.host}:{self.pages_port}", f"http://localhost:{self.pages_port}"]

    @property
    def gateway_url(self) -> str | None:
        """Where rider notices go: the configured gateway, or outside production the local one."""
        if self.notify_gateway_url:
            return self.notify_gateway_url
        return None if self.env == "production" else f"http://{self.host}:{self.notify_gateway_port}/notices"

    @property
    def database_url(self) -> str:
        return f"{self.pg_server.rstrip('/')}/{self.pg_database}"

    @property
    def owner_database_url(self) -> str:
        return f"{self.pg_owner_server.rstrip('/')}/{self.pg_database}"

    def admin_url(self, database: str = "postgres") -> str:
        """The admin credential on ``database``; only local and test runs have one."""
        if not self.pg_admin_server:
            raise RuntimeError(
                "creating or dropping roles and databases needs WARMBEE_PG_ADMIN_SERVER (local and test only); in "
                "production they are provisioned beforehand (deploy/postgres/roles.sql)"
            )
        return f"{self.pg_admin_server.rstrip('/')}/{database}"

    def as_owner(self) -> Settings:
        """These settings connecting as the owner role: for migrating and seeding, never for serving."""
        return self.model_copy(update={"pg_server": self.pg_owner_server})

    @property
    def app_role(self) -> str:
        return unquote(urlsplit(self.pg_server).username or "")

    @property
    def owner_role(self) -> str:
        return unquote(urlsplit(self.pg_owner_server).username or "")

    @property
    def app_password(self) -> str | None:
        password = urlsplit(self.pg_server).password
        return None if password is None else unquote(password)

    @property
    def owner_password(self) -> str | None:
        password = urlsplit(self.pg_owner_server).password
        return None if password is None else unquote(password)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
