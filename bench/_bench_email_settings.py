"""Settings of bench_reminders.py and of the Celery worker it starts: the test settings with a
real broker (BENCH_BROKER_URL, Redis) instead of eager tasks, and anymail's test backend (the
messages are built and handed to anymail exactly as for an ESP, then kept in memory)."""

import os

# Celery reads CELERY_BROKER_URL from the environment before the settings (the test settings
# put memory:// there).
os.environ["CELERY_BROKER_URL"] = os.environ["BENCH_BROKER_URL"]

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ["BENCH_BROKER_URL"]
EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
