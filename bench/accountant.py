"""Accountant time for a 10,000-event history, per method (python -m bench.accountant).

The history: 2,500 DP-SGD rounds (10 Poisson-sampled Gaussian steps each) interleaved with 7,500
aggregate queries (discrete Gaussian and discrete Laplace), as a node's ledger would hold them.
"""

from __future__ import annotations

import argparse
import time

from dp_accounting import dp_event as de
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

from privacy import configure
from privacy.accounting import adaptive_epsilon, epsilon_by_method, epsilon_of, new_state, pld, rdp, state_report
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent, dpsgd_event, dpsgd_params


def history(n: int) -> list:
    """A node-like ledger history of `n` events (DP-SGD rounds and aggregate queries)."""
    out = []
    for i in range(n):
        r = i % 4
        if r == 0:
            out.append(dpsgd_event(0.01, 1.1, 10))
        elif r == 1:
            out.append(DiscreteGaussianEvent(400.0, 1))
        elif r == 2:
            out.append(DiscreteGaussianEvent(600.0, 2))
        else:
            out.append(DiscreteLaplaceEvent(5000.0, 1))
    return out


def main() -> None:
    """Time each accounting method on the history and print a table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--delta", type=float, default=1e-6)
    ap.add_argument("--with-reference", action="store_true",
                    help="also time dp_accounting's PLDAccountant event by event (slow: ~130 s for 1,000 events)")
    args = ap.parse_args()
    configure()
    hist = history(args.events)
    rows = []

    def run(name, fn):
        pld.clear_cache()
        rdp.clear_cache()
        t = time.perf_counter()
        eps = fn()
        rows.append((name, time.perf_counter() - t, eps))

    run("cairn epsilon_of (tightest)", lambda: epsilon_of(hist, args.delta).epsilon)
    run("cairn pld", lambda: epsilon_by_method(hist, args.delta, "pld"))
    run("cairn rdp", lambda: epsilon_by_method(hist, args.delta, "rdp"))
    run("privacy filter, from scratch (adaptive_epsilon)", lambda: adaptive_epsilon(hist, args.delta).epsilon)

    def running():  # what a ledger does: the filter's running state, one release at a time (issue 16)
        st = new_state()
        for e in hist:
            st.add(e)
            state_report(st, args.delta)  # the figure after every release, as each append claims it
        return state_report(st, args.delta).epsilon

    run("privacy filter, running state (every prefix)", running)

    def dp_accounting_pld():  # reference: dp_accounting composing the ledger event by event
        acc = PLDAccountant()
        for e in hist:
            if (p := dpsgd_params(e)) is not None:
                acc.compose(de.SelfComposedDpEvent(
                    de.PoissonSampledDpEvent(p.sampling_probability, de.GaussianDpEvent(p.noise_multiplier)), p.steps))
            elif isinstance(e, DiscreteLaplaceEvent):
                acc.compose(de.DiscreteLaplaceDpEvent(1 / e.scale, int(e.sensitivity)))
            else:  # no discrete Gaussian event in dp_accounting: the continuous one as a stand-in
                acc.compose(de.GaussianDpEvent(e.sigma / e.sensitivity))
        return acc.get_epsilon(args.delta)

    if args.with_reference:
        run("dp_accounting PLDAccountant (per event)", dp_accounting_pld)
    print(f"accountant on a {args.events:,}-event history, delta={args.delta:g}")
    print(f"{'method':48s} {'seconds':>9s} {'epsilon':>10s}")
    for name, secs, eps in rows:
        print(f"{name:48s} {secs:9.3f} {eps:10.4f}")


if __name__ == "__main__":
    main()
