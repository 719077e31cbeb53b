import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")

application = get_wsgi_application()

from joulepoint.platform.warmup import server_process_warm_up  # noqa: E402  (needs Django set up)

server_process_warm_up()
