"""NeuroLoom hardware generator (Amaranth 0.5): shared layouts, NoC, neuron core, fabric top."""
