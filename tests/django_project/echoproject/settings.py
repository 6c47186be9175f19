"""Settings of a minimal Django project with WebSocket views.

Nothing here is specific to WebSockets: no app to install, no middleware.
"""

from __future__ import annotations

SECRET_KEY = "only-for-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS: list[str] = []
# Ordinary middleware, to show that WebSocket views go through it.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "echoproject.urls"
WSGI_APPLICATION = "echoproject.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# Errors of WebSocket handlers are logged by the "wssync.server" logger;
# Django's own errors go to the console too, where the tests look for them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "wssync": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
