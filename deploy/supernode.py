"""`flower-supernode` with its fixed polling waits shortened: `python -m deploy.supernode ARGS...`.

Flower 1.42's SuperNode (`flwr.supernode.start_client_internal`) has three waits that no flag,
environment variable or config sets:

- the idle loop: when a pull from the SuperLink brings no message it sleeps **3 s** before the next
  pull, so a message the coordinator sends just after a pull waits up to 3 s, and the message that
  follows a reply (the next SecAgg+ stage, the next round) waits almost all of it;
- waiting for the ClientApp's reply, and for each reply object, in steps of **0.5 s**.

This launcher runs Flower's own `flower-supernode` entry point (same arguments, same TLS and
SuperNode authentication) after capping the idle wait at `$CAIRN_SUPERNODE_POLL` seconds (default
0.5; 3 restores Flower's behaviour) and the reply waits, which only read the SuperNode's own
in-memory state, at 0.1 s (or the idle cap, if lower). It replaces that one module's reference to
`time` with a proxy whose `sleep` is capped; nothing else in Flower changes. The cost is more idle
pulls, each a TLS request the SuperLink authenticates (measured on loopback, 3 SuperNodes idle: the
whole deployment uses 0.07 cores with Flower's waits, 0.14 at 0.5 s, 0.29 at 0.25 s), which is why
this is a choice of the deployment (deploy/local.py uses it; deploy/README.md says how to in
production), not a default of the package. If the installed Flower no longer has that module or
that `time` reference, the SuperNode runs unchanged and says so.
"""

from __future__ import annotations

import os
import sys
import time
from types import ModuleType

POLL_ENV = "CAIRN_SUPERNODE_POLL"
DEFAULT_POLL = 0.5
FLOWER_IDLE_WAIT = 3  # the idle loop's `time.sleep(3)`; every other sleep there is a reply wait
REPLY_WAIT = 0.1


class _CappedTime(ModuleType):
    """The `time` module as one Flower module sees it: `sleep(s)` sleeps at most `cap` seconds."""

    def __init__(self, cap: float):
        super().__init__("time")
        self.cap = cap
        self.reply_cap = min(REPLY_WAIT, cap)

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.cap if seconds == FLOWER_IDLE_WAIT else self.reply_cap))


def poll_from_env() -> float:
    """$CAIRN_SUPERNODE_POLL seconds (0.01 to 3), else 0.5."""
    raw = os.environ.get(POLL_ENV, "")
    value = float(raw) if raw else DEFAULT_POLL
    if not 0.01 <= value <= 3.0:
        raise ValueError(f"${POLL_ENV} must be between 0.01 and 3 seconds, got {raw!r}")
    return value


def cap_supernode_waits(cap: float) -> bool:
    """Cap the SuperNode loop's idle sleep at `cap` seconds and its reply waits at 0.1 s (or `cap`);
    False when this Flower has no such loop."""
    try:
        from flwr.supernode import start_client_internal as loop
    except ImportError:
        return False
    if getattr(loop, "time", None) is not time and not isinstance(getattr(loop, "time", None), _CappedTime):
        return False
    loop.time = _CappedTime(cap)
    return True


class _WarmSuperExec(ModuleType):
    """The `subprocess` module as the SuperNode loop sees it: `flower-superexec` becomes
    `python -m deploy.superexec` (ClientApps forked from a warm process, deploy/superexec.py)."""

    def __init__(self, real: ModuleType):
        super().__init__("subprocess")
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def Popen(self, args, *a, **kw):  # noqa: N802 - the name Flower calls
        if isinstance(args, list) and args[:1] == ["flower-superexec"]:
            args = [sys.executable, "-m", "deploy.superexec", *args[1:]]
        return self._real.Popen(args, *a, **kw)


def use_warm_superexec() -> bool:
    """With $CAIRN_WARM_CLIENTAPP set, the SuperNode starts deploy/superexec.py as its SuperExec."""
    from flwr.supernode import start_client_internal as loop

    from deploy.superexec import warm_modules

    if not warm_modules() or not hasattr(loop, "subprocess"):
        return False
    if not isinstance(loop.subprocess, _WarmSuperExec):
        loop.subprocess = _WarmSuperExec(loop.subprocess)
    return True


def main() -> int:
    cap = poll_from_env()
    if not cap_supernode_waits(cap):
        print(f"deploy.supernode: this Flower's SuperNode loop is not the one {__name__} knows; "
              "running it with Flower's own waits", file=sys.stderr, flush=True)
    use_warm_superexec()
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
