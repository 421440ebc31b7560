"""Shared pytest configuration. Fixture plugins live in tests/support/."""

import signal

pytest_plugins = ["tests.support.kube_fixtures", "tests.operator.fixtures"]

# A shell without job control (`cmd &`, some CI runners) starts background jobs with SIGINT
# ignored, and an ignored signal stays ignored across exec. Tests that press Ctrl-C on a
# subprocess (the CLI, the control-plane teardown) would then see it ignored. Restoring
# Python's handler here makes every subprocess start with the default, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
