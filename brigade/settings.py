"""Settings: supabase.toml defaults, overridden by BRIGADE_* environment variables."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from psycopg.conninfo import conninfo_to_dict

from brigade.errors import BrigadeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOML_PATH = PROJECT_ROOT / "supabase.toml"
# The Supabase CLI's published local secret: anyone can sign tokens with it.
LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class UnsafeSettings(BrigadeError):
    code = "unsafe_settings"


class TomlSource(PydanticBaseSettingsSource):
    """Flattens supabase.toml's sections into one namespace of keys."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        if path.is_file():
            for section in tomllib.loads(path.read_text()).values():
                if isinstance(section, dict):
                    self._values.update(section)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every knob of Brigade in one place."""

    model_config = SettingsConfigDict(env_prefix="BRIGADE_", extra="ignore")

    database_url: str = Field(default="", validation_alias=AliasChoices("BRIGADE_DATABASE_URL", "DATABASE_URL"))
    data_dir: Path = PROJECT_ROOT / ".data"
    db_port: int = 54322
    # The hosted pgmq the local stand-in holds the code to: "1.5.1" (newer Supabase images) or "1.4.4".
    pgmq_version: str = "1.5.1"

    functions_host: str = "127.0.0.1"
    functions_port: int = 54321
    public_url: str = ""
    # The client IP for rate limits: the first X-Forwarded-For entry when the functions run behind a
    # proxy that sets it (Supabase, a load balancer); false: the socket peer only.
    trust_forwarded_for: bool = True
    # CORS: browser origins allowed besides each business's storefront (subdomain of storefront_domain,
    # custom domain): the merchant dashboards, comma-separated ("https://dash.example.com").
    cors_dashboard_origins: str = "http://127.0.0.1:3000,http://localhost:3000"
    # The platform's storefront domain: a business's storefront is https://<subdomain>.<storefront_domain>.
    storefront_domain: str = "brigade.app"
    cors_max_age: int = 600
    health_timeout: float = 3.0

    jwt_secret: str = LOCAL_JWT_SECRET

    worker_concurrency: int = 8
    worker_batch_size: int = 20
    worker_visibility_timeout: int = 30
    worker_max_attempts: int = 5
    worker_backoff_base: float = 2.0
    worker_backoff_max: float = 900.0
    worker_poll_interval: float = 5.0
    worker_heartbeat_interval: float = 10.0
    worker_plugins: str = ""
    # Marketing sends claimed per automation.due / campaign.send event: the event's own and the earliest
    # other due ones, checked set-based in one call (app.claim_marketing_sends).
    marketing_claim_batch: int = 25

    sms_provider: str = "log"
    email_provider: str = "log"
    payments_provider: str = "log"
    # phone delivery addresses: "log" (no lookup, the address is taken as spoken) or "nominatim"
    geocoder_provider: str = "log"
    geocoder_base_url: str = "https://nominatim.openstreetmap.org"
    geocoder_user_agent: str = "brigade (self-hosted)"

    stripe_secret_key: str = ""
    stripe_webhook_secret: str = "whsec_brigade_local_development_secret"
    stripe_api_base: str = ""
    checkout_success_url: str = "http://127.0.0.1:3000/orders/{order_id}?paid=1"
    checkout_cancel_url: str = "http://127.0.0.1:3000/orders/{order_id}?cancelled=1"
    booking_success_url: str = "http://127.0.0.1:3000/bookings/{booking_id}?paid=1"
    booking_cancel_url: str = "http://127.0.0.1:3000/bookings/{booking_id}?cancelled=1"
    # where a review request sends the guest; {order_id} and {access_token} prove the purchase (submit_review)
    review_url: str = "http://127.0.0.1:3000/orders/{order_id}/review?token={access_token}"
    checkout_session_minutes: int = 30

    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_api_base: str = ""

    # Web Push: "log" records each push locally; "webpush" signs with the VAPID key (pywebpush) and
    # posts to the browser's push service. vapid_private_key: the raw P-256 key, base64url (or PEM);
    # vapid_public_key is what the storefront passes to pushManager.subscribe (applicationServerKey).
    push_provider: str = "log"
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = "mailto:ops@brigade.local"
    push_ttl_seconds: int = 3600

    resend_api_key: str = ""
    resend_api_url: str = ""
    resend_webhook_secret: str = ""  # whsec_…: Resend signs its webhooks with svix
    email_from: str = "Brigade <orders@brigade.local>"

    # Courier networks for delivery dispatch: "log" fabricates bookings locally; "live" calls Uber Direct
    # and DoorDash Drive (httpx) at the base URLs below with the credentials below.
    courier_provider: str = "log"
    uber_api_base: str = "https://api.uber.com"
    uber_auth_url: str = "https://auth.uber.com/oauth/v2/token"
    uber_customer_id: str = ""
    uber_client_id: str = ""
    uber_client_secret: str = ""
    uber_webhook_signing_key: str = "uber_local_webhook_signing_key"
    doordash_api_base: str = "https://openapi.doordash.com"
    doordash_developer_id: str = ""
    doordash_key_id: str = ""
    doordash_signing_secret: str = ""
    doordash_webhook_auth: str = "Bearer doordash_local_webhook_token"
    courier_timeout_seconds: float = 10.0
    delivery_tracking_url: str = "http://127.0.0.1:3000/orders/{order_id}/track?token={access_token}"

    # What a send costs, for the money views, until the provider reports the real price.
    sms_cost_cents: float = 0.79
    voice_cost_cents_per_minute: float = 1.4
    email_cost_cents: float = 0.0

    # Voice agent (issue 7): "rules" (offline) or "llm" (an OpenAI-compatible chat endpoint with tool calls).
    voice_nlu_backend: str = "rules"
    voice_llm_base_url: str = ""
    voice_llm_api_key: str = ""
    voice_llm_model: str = "gpt-4o-mini"
    voice_llm_timeout: float = 8.0
    voice_min_confidence: float = 0.3
    # How long a venue's menu, as the agent understands it, is kept between turns (0: read every turn).
    # place_order still checks each line against the live menu, so a stale menu costs a re-ask at most.
    voice_menu_cache_seconds: float = 30.0

    # Conversational admin (issue 17): "auto" uses the OpenAI-compatible endpoint when ask_llm_base_url is set and the
    # offline rules otherwise; "rules" or "llm" force one. The rules also answer whenever the endpoint fails.
    ask_backend: str = "auto"
    ask_llm_base_url: str = ""
    ask_llm_api_key: str = ""
    ask_llm_model: str = "gpt-4o-mini"
    ask_llm_timeout: float = 15.0
    ask_llm_max_rounds: int = 3

    log_format: str = "text"

    # GET /functions/v1/metrics (Prometheus) answers only `Authorization: Bearer <metrics_token>`; empty: 404.
    metrics_token: str = ""
    metrics_flush_seconds: float = 5.0
    # Who the alert rules tell when a rule names nobody: emails (comma-separated) and a webhook URL
    # (Slack's incoming webhook, or anything taking {"text": ...} as JSON).
    alert_emails: str = ""
    alert_webhook_url: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlSource(settings_cls, TOML_PATH))

    @property
    def embedded(self) -> bool:
        """True when Brigade runs its own PostgreSQL cluster (no DATABASE_URL given)."""
        return not self.database_url

    @property
    def local_database(self) -> bool:
        """The embedded cluster, or a database on this machine (loopback or a Unix socket)."""
        if self.embedded:
            return True
        try:
            host = str(conninfo_to_dict(self.database_url).get("host") or "")
        except Exception:  # an unparsable URL is not known to be local
            return False
        # no host: libpq's default, a Unix socket on this machine
        return all(h in LOOPBACK_HOSTS or h.startswith("/") for h in host.split(",") if h)

    def require_safe_jwt_secret(self) -> None:
        """Refuse the well-known local JWT secret anywhere but a local database: anyone could sign an
        operator's token with it."""
        if self.jwt_secret == LOCAL_JWT_SECRET and not self.local_database:
            raise UnsafeSettings("BRIGADE_JWT_SECRET is the well-known local secret but the database is not local: "
                                 "set it to the project's JWT secret", hint="local_jwt_secret")

    @property
    def dsn(self) -> str:
        """The connection string: DATABASE_URL, or the embedded cluster's."""
        if self.database_url:
            return self.database_url
        return f"postgresql://postgres@127.0.0.1:{self.db_port}/postgres"

    @property
    def functions_url(self) -> str:
        """Base URL of the functions, as outside callers see it."""
        base = self.public_url or f"http://{self.functions_host}:{self.functions_port}"
        return base.rstrip("/") + "/functions/v1"

    @property
    def outbox_file(self) -> Path:
        """Where the `log` providers append what they would have sent (the local run's "phone")."""
        return self.data_dir / "outbox.jsonl"

    @property
    def dashboard_origins(self) -> frozenset[str]:
        """The configured dashboard origins (CORS), normalised to scheme://host[:port]."""
        return frozenset(o.strip().rstrip("/").lower() for o in self.cors_dashboard_origins.split(",") if o.strip())

    @property
    def plugin_modules(self) -> list[str]:
        """Import paths of extra handler/job modules."""
        return [m.strip() for m in self.worker_plugins.split(",") if m.strip()]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
