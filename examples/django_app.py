"""A Django project in one module whose views enqueue through one shared raftq.SyncClient."""

import atexit
import json
import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST
from tasks import resize

import raftq

settings.configure(
    ROOT_URLCONF=__name__,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "an example, not a secret"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
)

# One client for every thread of the process; a pre-fork server's workers each reconnect.
client = raftq.SyncClient(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100"))
atexit.register(client.close)


@require_POST
def enqueue_resize(request: HttpRequest) -> JsonResponse:
    job_id = resize.enqueue_sync(client, file=json.loads(request.body)["file"])
    return JsonResponse({"id": job_id}, status=201)


@require_GET
def job_state(request: HttpRequest, job_id: str) -> JsonResponse:
    try:
        job = client.get(job_id)
    except raftq.JobNotFound:
        return JsonResponse({"error": f"no job {job_id}"}, status=404)
    return JsonResponse({"state": job.state, "result": job.result})


urlpatterns = [path("resize", enqueue_resize), path("jobs/<job_id>", job_state)]
application = get_wsgi_application()  # for gunicorn or uWSGI: django_app:application

if __name__ == "__main__":  # python django_app.py runserver
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
