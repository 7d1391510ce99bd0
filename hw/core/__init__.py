"""The neuron core: memories, synapse engine, neuron engine, route unit, config port.

See ``docs/core.md`` for the microarchitecture; :class:`hw.core.core.NeuronCore` is the top.
"""
