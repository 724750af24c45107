"""Settings of the device clusters test_device_threads starts: the suite's own, but a guest may take a
minute at the PIN pad (with the suite's 2 s the slow guest's payment would turn "unknown" instead)."""

from nekassir.settings_test import *  # noqa: F403

TERMINAL_HTTP_TIMEOUT = 60.0
TERMINAL_GUEST_TIMEOUT = 60.0
