"""Test settings: real PostgreSQL (DATABASE_URL, default the local server), fast hasher, memory email."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")  # base.py would make the .data/celery folders

from .base import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_TASK_ALWAYS_EAGER = True  # tests only: tasks run inside the caller
CELERY_BROKER_URL = "memory://"
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# No collected static files in tests: WhiteNoise would warn on every request.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405
