"""WSGI entry point, for a production server, e.g. from examples/django_app:
``waitress-serve --threads=32 --channel-request-lookahead=1 chatsite.wsgi:application``."""

import os
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent.parent))  # chat_common

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
