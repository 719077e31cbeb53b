import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")

app = Celery("joulepoint")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
