"""Settings shared by every environment, read from the process environment (12-factor).

The absence of a variable selects the embedded default: no DATABASE_URL -> embedded
PostgreSQL (pgserver), no CELERY_BROKER_URL -> a broker in files under .data/celery, no
REDIS_URL/CACHE_URL -> a file cache in .data/cache, console email.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    environ.Env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])

INSTALLED_APPS = [
    # Django's admin with the project's site as the default one (the installation's name, the
    # navigation grouped by task, the dashboard as first page): config/admin_site.py.
    "config.admin_site.LoyaltyAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",  # before "loyalty": loyalty's admin unregisters the library's unused APIKey
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: no CDN
    "django_celery_beat",
    "anymail",
    "django_htmx",
    "import_export",
    "axes",  # staff login lock-out after repeated failures (AXES_* below)
    "loyalty",
    "cards",
    "tiers",
    "rewards",
    "workflows",
    "notifications",
    "dashboard",
    "programfiles",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Sets the Content-Security-Policy of the views that carry one (the customer portal,
    # portal/views.py) and gives them a nonce; there is no site-wide policy (docs/portal.md).
    "csp.middleware.CSPMiddleware",
    # The admin's and the API docs' policy (config/security.py), handed to the middleware above.
    "config.security.StaffPagesCSPMiddleware",
    # Refuses logins from a locked-out username and address (django-axes); last, as its docs say.
    "axes.middleware.AxesMiddleware",
]
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_url() -> str:
    url = env("DATABASE_URL", default="")
    if url:
        return url
    from config.embedded_pg import database_url

    return database_url()


DATABASES = {"default": env.db_url_config(_database_url())}
# Transactions belong to services (docs/architecture.md); never one per request.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds state that every web process must share: the API's per-key rate limits
# (loyalty/api.py) and the card PIN lockouts (cards/services.py). CACHE_URL (a django-environ
# cache URL) wins, then REDIS_URL (Django's RedisCache: production, `make services`); unset, a
# file cache in LOYALTY_CACHE_DIR (default .data/cache), shared by the processes of one machine
# (docs/decisions.md). Tests use a per-process memory cache (config/settings/test.py).
if env("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
elif env("REDIS_URL", default=""):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env("REDIS_URL")}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(Path(env("LOYALTY_CACHE_DIR", default=str(BASE_DIR / ".data" / "cache"))).absolute()),
        }
    }
CACHES["default"].setdefault("KEY_PREFIX", env("CACHE_KEY_PREFIX", default="loyalty"))

# Staff log in with a password; customers of the portal with an emailed one-time link
# (django-sesame, docs/portal.md). The portal's backend accepts only the login users of members.
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out staff login before any password is checked (django-axes;
    # config/security.py).
    "config.security.StaffLoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
    "portal.backends.MemberLinkBackend",
]
PORTAL_LOGIN_LINK_MINUTES = env.int("PORTAL_LOGIN_LINK_MINUTES", default=15)
SESAME_MAX_AGE = PORTAL_LOGIN_LINK_MINUTES * 60
SESAME_ONE_TIME = True  # a link works once: logging in changes the user's last_login, which signs the link
# Rate limits of the portal's forms (django-ratelimit, counted in the default cache above, so
# shared by every web process when CACHES is Redis): per address and per client IP.
PORTAL_RATE_PER_ADDRESS = env("PORTAL_RATE_PER_ADDRESS", default="5/h")
PORTAL_RATE_PER_IP = env("PORTAL_RATE_PER_IP", default="30/h")
# The client IP of those limits (portal/client_ip.py): REMOTE_ADDR unless the app runs behind
# reverse proxies, then the rightmost hop of PORTAL_CLIENT_IP_HEADER that is not one of the
# PORTAL_TRUSTED_PROXIES (production reads both from the environment; docs/portal.md).
RATELIMIT_IP_META_KEY = "portal.client_ip.client_ip"
PORTAL_TRUSTED_PROXIES = 0
PORTAL_CLIENT_IP_HEADER = "X-Forwarded-For"

# Staff login lock-out (django-axes, docs/back-office.md): after AXES_FAILURE_LIMIT failed
# logins for one username from one address, that pair is refused (HTTP 429) for
# AXES_COOLOFF_HOURS (0: until `manage.py axes_reset` or the admin's "Access attempts" page,
# Technical group). The attempts are stored in the database, so every web process shares them.
# A successful login resets the count. Behind a proxy, AXES_IPWARE_PROXY_COUNT (the number of
# proxies in front of Django) makes the client address the one the proxy saw.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0) or None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
if env("AXES_IPWARE_PROXY_COUNT", default=""):
    AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT")

# The installation's name: the admin's header, page titles and login page (config/admin_site.py).
LOYALTY_SITE_NAME = env("LOYALTY_SITE_NAME", default="Loyalty back-office")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The languages of the customer portal (and of member emails): loyalty.models.LANGUAGES.
LANGUAGES = [("en", "English"), ("fr", "Français")]
# The portal's catalog comes first: its words win over Django's own (admin's "Change"...).
LOCALE_PATHS = [BASE_DIR / "portal" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = BASE_DIR / ".data" / "media"
MEDIA_URL = "media/"

# Celery. CELERY_BROKER_URL names the broker (Redis in production and `make services`). Unset,
# the broker is kombu's filesystem transport in LOYALTY_CELERY_DIR (default .data/celery): the
# web process, the worker and beat of `make run` on one machine need no server for it
# (docs/decisions.md). Tasks run eagerly only in tests (config/settings/test.py).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or "filesystem://localhost/"  # a host: no warning
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = Path(env("LOYALTY_CELERY_DIR", default=str(BASE_DIR / ".data" / "celery"))).absolute()
    for _sub in ("queue", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # One folder both ways: every process reads and writes the same queue.
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

# Email through anymail; console by default.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="anymail.backends.console.EmailBackend")
# Where django.core.mail.backends.filebased.EmailBackend writes (`make run`'s demo data load).
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / ".data" / "emails"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="loyalty@example.com")
ANYMAIL = env.dict("ANYMAIL", default={})
# Mailgun, the ESP whose tracking webhook is wired (/anymail/mailgun/tracking/, docs/emails.md):
# EMAIL_BACKEND=anymail.backends.mailgun.EmailBackend plus these. The webhook signing key checks
# each event's HMAC signature; ANYMAIL_WEBHOOK_SECRET ("user:password") adds basic auth.
for _name in ("MAILGUN_API_KEY", "MAILGUN_SENDER_DOMAIN", "MAILGUN_API_URL", "MAILGUN_WEBHOOK_SIGNING_KEY"):
    if env(_name, default=""):
        ANYMAIL[_name] = env(_name)
if env("ANYMAIL_WEBHOOK_SECRET", default=""):
    ANYMAIL["WEBHOOK_SECRET"] = env.list("ANYMAIL_WEBHOOK_SECRET")
# Where members reach this installation: links in emails (unsubscribe, portal) are built on it.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
EMAIL_TIMEOUT = 10

# The REST API (docs/api.md). Its machinery is `loyalty.api.views.ProgramApi`, the base of every API view:
# API-key authentication (401), scopes (403), per-key rate limits (429), cursor pagination.
# Those classes are set on ProgramApi, not here: DRF imports the DEFAULT_* classes while
# `rest_framework.views` itself is being imported, and loyalty.api needs that module (a cycle).
# The parser (`loyalty.api.parsing.ApiJSONParser`, bounded nesting) is set there too.
# The defaults below close any DRF view that is not a ProgramApi (no authenticator, 403).
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Requests per API key (`loyalty.api.throttling.APIKeyRateThrottle`); a view may name another scope
    # (`throttle_scope`). Counters live in the default cache (CACHES above), shared by every
    # web process; a per-process cache would let each process count on its own.
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env("API_RATE_LIMIT", default="3000/min"),
    },
    "EXCEPTION_HANDLER": "loyalty.api.errors.api_exception_handler",  # read per request: no import cycle
    "DEFAULT_SCHEMA_CLASS": "loyalty.api.schema.ApiAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

# Limits of the API (docs/api.md, "Limits"), each refused before anything is written. A body
# larger than API_MAX_BODY_BYTES is a 413 (Django's own DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB,
# still bounds the admin's forms); an activity carries API_MAX_ACTIVITY_ITEMS items at most
# (400); an `occurred_at` lies within API_OCCURRED_AT_MAX_AGE_DAYS before now and
# API_CLOCK_SKEW_SECONDS after it (400).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=256 * 1024)
# A web process remembers an API key it verified (with its program) this many seconds: a key
# revoked or a program changed in another process takes effect here within that time (in the
# process that made the change, at once). 0: look the key up on every request
# (loyalty/api/auth.py, docs/performance.md).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
API_MAX_ACTIVITY_ITEMS = env.int("API_MAX_ACTIVITY_ITEMS", default=500)
API_OCCURRED_AT_MAX_AGE_DAYS = env.int("API_OCCURRED_AT_MAX_AGE_DAYS", default=3 * 366)
API_CLOCK_SKEW_SECONDS = env.int("API_CLOCK_SKEW_SECONDS", default=300)

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty API",
    "DESCRIPTION": (
        "REST API of the loyalty back-office (version 1). Authenticate with `Authorization: Api-Key <key>`. "
        'Errors are `{"error": {"code", "message", "details"}}`; lists are paginated by cursor '
        '(`{"results": [...], "next": url|null}`); every POST accepts an `Idempotency-Key` header.'
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs are public (they hold no data); the API itself needs a key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Several components have a `status` or `kind`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "CardStatusEnum": "cards.models.Card.Status",
        "CardKindEnum": "cards.models.Card.Kind",
        "MemberStatusEnum": "loyalty.models.Member.Status",
        "LedgerEntryKindEnum": "loyalty.models.LedgerEntry.Kind",
        "RewardKindEnum": "rewards.models.Reward.Kind",
        "CouponStatusEnum": "rewards.models.Redemption.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
}

# Ledger limits: a single post above this is refused as absurd (a typo, an attack).
LOYALTY_MAX_POINTS_PER_POST = env.int("LOYALTY_MAX_POINTS_PER_POST", default=10_000_000)

# Card claim PINs are an HMAC of the card number with this key (cards/numbers.py). Changing it
# changes every printed PIN: set it once per installation and keep it.
CARD_PIN_SECRET = env("CARD_PIN_SECRET", default=SECRET_KEY)

# Outgoing webhooks (notifications app, docs/webhooks.md): endpoint URLs must be https and must
# not resolve to private, loopback, link-local or reserved addresses. True (development and
# tests only) allows http and any address, at save time and at delivery time.
WEBHOOKS_ALLOW_PRIVATE_URLS = env.bool("WEBHOOKS_ALLOW_PRIVATE_URLS", default=False)

# ---------------------------------------------------------------------------------------------
# Wallet cards (portal/wallet, docs/wallet.md). Every value comes from the environment; without
# a wallet's values its button is hidden. Certificates and keys: the PEM text itself or the path
# of a file (certificates may be DER files, like Apple's WWDR download).
# Apple Wallet (.pkpass store cards):
WALLET_APPLE_PASS_TYPE_ID = env("WALLET_APPLE_PASS_TYPE_ID", default="")  # pass.com.example.loyalty
WALLET_APPLE_TEAM_ID = env("WALLET_APPLE_TEAM_ID", default="")  # the developer account's Team ID
WALLET_APPLE_CERT = env("WALLET_APPLE_CERT", default="")  # the Pass Type ID certificate
WALLET_APPLE_KEY = env("WALLET_APPLE_KEY", default="")  # its private key
WALLET_APPLE_KEY_PASSWORD = env("WALLET_APPLE_KEY_PASSWORD", default="")  # if that key is encrypted
WALLET_APPLE_WWDR_CERT = env("WALLET_APPLE_WWDR_CERT", default="")  # Apple's WWDR intermediate certificate
# The pass web service (not built yet, docs/wallet.md): when set, passes carry webServiceURL and
# an authenticationToken, and iPhones will call it for updates.
WALLET_APPLE_WEB_SERVICE_URL = env("WALLET_APPLE_WEB_SERVICE_URL", default="")
# Optional folder of pass images (icon.png, icon@2x.png, logo.png, ...; per program in <slug>/);
# missing images are drawn in the program's colours.
WALLET_APPLE_IMAGES_DIR = env("WALLET_APPLE_IMAGES_DIR", default="")
# Google Wallet (save links):
WALLET_GOOGLE_ISSUER_ID = env("WALLET_GOOGLE_ISSUER_ID", default="")
WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL = env("WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL", default="")
WALLET_GOOGLE_PRIVATE_KEY = env("WALLET_GOOGLE_PRIVATE_KEY", default="")  # the service account's RSA key
# Logo of programs without a logo_url (https, PNG); unset: the portal's generated logo.
WALLET_GOOGLE_LOGO_URL = env("WALLET_GOOGLE_LOGO_URL", default="")
# Class and object ids are "<issuer id>.<prefix>-program-<slug>" / "<prefix>-card-<number>": give
# staging and production different prefixes when they share an issuer account.
WALLET_GOOGLE_ID_PREFIX = env("WALLET_GOOGLE_ID_PREFIX", default="loyalty")
# Both wallets: "code128" (what till scanners read) or "qr".
WALLET_BARCODE_FORMAT = env("WALLET_BARCODE_FORMAT", default="code128")
if WALLET_BARCODE_FORMAT not in ("code128", "qr"):
    raise ValueError(f"WALLET_BARCODE_FORMAT is code128 or qr, not {WALLET_BARCODE_FORMAT!r}")
# End of the wallet cards settings.
# ---------------------------------------------------------------------------------------------
