"""NeuroLoom firmware: neuron microcode, model import, quantization, compiler and host driver."""
