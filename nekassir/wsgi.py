import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nekassir.settings")
django_application = get_wsgi_application()

from nekassir.api.poll_handler import with_poll_handler  # noqa: E402 - needs Django set up (above)

# The kiosks' status poll through a short middleware chain (nekassir/api/poll_handler.py); the rest as Django has it.
application = with_poll_handler(django_application)
