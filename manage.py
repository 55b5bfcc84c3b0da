#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    if sys.argv[1:2] == ["serve"]:
        # Before Django imports daphne, which creates its event loop on import.
        from playground.eventloop import event_loop_install

        event_loop_install()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
