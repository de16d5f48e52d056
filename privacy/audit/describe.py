"""Plain-language descriptions of logged DP events, for the audit's per-entry table and report.

Words only: nothing here is a verification. `describe_event(proto)` -> (words, parameters).
"""

from __future__ import annotations

from protos import events_pb2


def describe_event(ev: events_pb2.DpEvent) -> tuple[str, dict]:
    """(plain words, parameters) of a ledger event, for reports."""
    which = ev.WhichOneof("event")
    if which == "self_composed":
        words, p = describe_event(ev.self_composed.event)
        return f"{words}, repeated {ev.self_composed.count} times", {**p, "count": ev.self_composed.count}
    if which == "poisson_sampled":
        words, p = describe_event(ev.poisson_sampled.event)
        q = ev.poisson_sampled.sampling_probability
        return f"Poisson-sampled (each contributor w.p. q={q:.4g}) {words}", {**p, "sampling_probability": q}
    if which in ("gaussian", "discrete_gaussian"):
        g = getattr(ev, which)
        name = "Gaussian" if which == "gaussian" else "discrete Gaussian"
        return (f"{name} noise sigma={g.sigma:.4g} on L2 sensitivity {g.sensitivity:.4g} "
                f"(noise multiplier {g.sigma / g.sensitivity:.4g})"), {
            "mechanism": which, "sigma": g.sigma, "sensitivity": g.sensitivity, "noise_multiplier": g.sigma / g.sensitivity}
    if which in ("laplace", "discrete_laplace"):
        g = getattr(ev, which)
        name = "Laplace" if which == "laplace" else "discrete Laplace"
        return f"{name} noise scale={g.scale:.4g} on L1 sensitivity {g.sensitivity:.4g}", {
            "mechanism": which, "scale": g.scale, "sensitivity": g.sensitivity}
    if which == "composed":
        parts = [describe_event(e) for e in ev.composed.events]
        return "; then ".join(w for w, _ in parts) or "nothing", {"mechanism": "composed", "parts": [p for _, p in parts]}
    if which == "epsilon_delta":
        g = ev.epsilon_delta
        return (f"a mechanism proven ({g.epsilon:.4g}, {g.delta:.3g})-DP (thresholded key selection)",
                {"mechanism": which, "epsilon": g.epsilon, "delta": g.delta})
    if which == "no_op":
        return "no private release", {"mechanism": "no_op"}
    return "missing event", {}
