"""gunicorn settings for Nekassir (docs/PRODUCTION.md). Every value can be changed by environment variable.

    gunicorn -c deploy/gunicorn.conf.py nekassir.wsgi:application

Threaded workers (gthread): the panel polls device jobs with htmx every second or two and the kiosks
poll their orders; with sync workers a few open pages would take every worker. whitenoise serves the
static files from the same processes (no nginx needed on a venue LAN).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# No request of ours lasts long: device work runs in the q2 clusters, pages read the database only.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# A worker is replaced after this many requests (with jitter, so they are not replaced all at once): a guard
# against slow leaks, not a routine. 30 kiosks polling four times a second make ~120 requests a second; at
# 5,000 each worker was replaced every ~80 s, and each replacement left one worker for ~3 s while the new one
# loaded Django on the same two cores (seen twice in one 106 s run of `python -m scripts.bench.kiosks30`).
# 200,000 ± 10 %: at that load a worker lasts about an hour, on a venue's ordinary day several.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = max_requests // 10
# The application is loaded in each worker, after the fork: no database connection is shared.
preload_app = False
# Access log off by default (the kiosks poll; journald would fill with it); errors go to stderr.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "nekassir-web"
# gunicorn's control socket (gunicornc) is off unless a path is given: by default every instance would
# share $HOME/.gunicorn/gunicorn.ctl.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True
