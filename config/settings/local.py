"""Developer defaults (`make run`): DEBUG on, embedded PostgreSQL unless DATABASE_URL is set."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from .base import *  # noqa: F403

STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405

# A receiver on the developer's machine (http://127.0.0.1:9000/...) is a normal dev setup.
WEBHOOKS_ALLOW_PRIVATE_URLS = env.bool("WEBHOOKS_ALLOW_PRIVATE_URLS", default=True)  # noqa: F405
