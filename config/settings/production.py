"""Production: secure cookies, HTTPS only with HSTS, ESP email by settings.

Required environment (README, "Production"): DJANGO_SECRET_KEY (50+ random characters),
DATABASE_URL, DJANGO_ALLOWED_HOSTS; CELERY_BROKER_URL and REDIS_URL for the workers and the
shared cache. `manage.py check --deploy` is clean with these (tests/integration/test_security.py).
"""

from .base import *  # noqa: F403
from .base import env

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# HTTP Strict Transport Security: browsers use HTTPS only for this host (and, by default, its
# subdomains) for a year after a visit. Start lower (e.g. 3600) when moving a site to HTTPS and
# raise it once everything works; set DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS=0 when a subdomain
# of the host still serves plain HTTP. Preloading (a commitment to browser vendors' lists) is
# off unless DJANGO_SECURE_HSTS_PRELOAD=1.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Session and CSRF cookies: not readable by scripts, sent on top-level navigation from other
# sites (the portal's emailed links) but not on their cross-site POSTs.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=14 * 24 * 3600)
SECURE_REFERRER_POLICY = "same-origin"  # the portal's login links never leak to a logo's host
# Behind reverse proxies (a load balancer, nginx): how many there are in front of the app, and
# the header each appends the client's address to. The portal's rate limits then count the
# rightmost address no proxy of ours added (portal/client_ip.py); 0 ignores the header.
PORTAL_TRUSTED_PROXIES = env.int("PORTAL_TRUSTED_PROXIES", default=0)
PORTAL_CLIENT_IP_HEADER = env("PORTAL_CLIENT_IP_HEADER", default="X-Forwarded-For")
DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {})}  # noqa: F405

# The deploy check's warnings that are choices of the installation, not oversights: preloading
# HSTS is opt-in (above); a site that turns off includeSubDomains has said why.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
]
