#!/usr/bin/env python
"""The Django example's manage.py: ``python examples/django_app/manage.py runserver``."""

import os
import sys
from pathlib import Path

# chat_common (the page and the model client, shared with the Flask example) is one level up.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
