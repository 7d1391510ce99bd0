"""The contract layer: every format and number that gateware, golden model, compiler and host
driver share. It imports nothing else of the project.

``config`` (:class:`FabricConfig`), ``layouts`` (every ``data`` layout), ``fixed`` (the
multiply-shift rounding and saturation), ``isa`` (microcode encoding), ``hostproto`` (host
frames), ``coreconfig`` (a core's configuration as data), ``image`` (the config-image file
format), ``transport`` (what a driver needs from a fabric).
"""
