"""Step-by-step runs of a compiled model on a fabric (RTL or golden model), shared by the
synchronous and GALS end-to-end tests (``tests/test_fabric_e2e.py``, ``tests/test_gals_rtl.py``).
"""

from neuroloom.firmware.driver import Driver

#: small cores so that small models spread over the whole mesh and the builds stay quick
SMALL = dict(neurons=32, axons=32, synapse_rows=128, route_words=64, ucode_depth=32)


def steps_of(transport, img, x, mode):
    """Raw host outputs of every step for one sequence: {step: sorted [(channel, payload)]}."""
    drv = Driver(transport)
    drv.load(img)
    drv.set_mode(mode)
    period = img.token_period(mode)
    total = img.output_step(mode, len(x) - 1) + 1
    out = {}
    transport.clear()
    before = transport.counters()          # counters survive CLEAR: compare what this run adds
    for step in range(0, total, period):
        k = step // period
        if k < len(x):
            for i, dests in enumerate(img.inputs):
                for core, axon in dests:
                    transport.inject(core, axon, int(x[k, i]))
        for so in transport.run(min(period, total - step)):
            out[so.step] = sorted((int(c), int(p)) for c, p, ok in
                                  zip(so.channels, so.payload[0], so.valid[0]) if ok)
    return out, transport.counters() - before
