"""Option groups the commands share, and how their values become library arguments.

* fabric (:func:`add_fabric_options`, :func:`fabric_request`): ``--fabric fabric.json``,
  ``--mesh WxH`` and one flag per :class:`FabricConfig` field, generated from the dataclass;
  flags override the file, the file overrides the defaults;
* data set (:func:`add_dataset_options`, :func:`dataset_from_args`);
* calibration of a float model (:func:`add_calibration_options`, :func:`calibration_from_args`);
* backend (:func:`add_backend_options`, :func:`check_backend`);
* Gu checkpoint import (:func:`add_import_options`, :func:`import_options`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware import deploy
from neuroloom.firmware.datasets import DATASET_ALIASES as _LIBRARY_ALIASES
from neuroloom.firmware.datasets import (
    DATASETS,
    SequenceData,
    canonical_name,
    is_dataset_file,
    load_dataset,
    npz_has_dataset,
)
from neuroloom.firmware.importer import POOLINGS
from neuroloom.firmware.qmodel import DEFAULT_MAPPING, MAPPINGS

__all__ = ["BACKENDS", "CLIError", "DATASET_ALIASES", "DEFAULT_POOLING", "FIELD_HELP",
           "FabricRequest",
           "add_backend_options", "add_calibration_options", "add_dataset_options",
           "add_fabric_options", "add_import_options", "add_mapping_option",
           "calibration_from_args", "check_backend", "dataset_from_args", "dataset_spec",
           "fabric_flag", "fabric_request", "import_options", "labels_for_model", "load_target",
           "model_labels", "note"]


class CLIError(Exception):
    """A user error with a one-line message."""


# -- fabric ----------------------------------------------------------------------------------------

#: help text of each FabricConfig field's flag (a field missing here still gets a flag)
FIELD_HELP = {
    "mesh_w": "tiles across (mesh width)",
    "mesh_h": "tiles down (mesh height)",
    "neurons": "neurons per core",
    "axons": "input axon table entries per core",
    "synapse_rows": "synapse memory words per core",
    "synapse_lanes": "weights per synapse word: 1, 2, 4 or 8",
    "route_words": "output route memory words per core",
    "ucode_depth": "microcode words per core",
    "groups": "neuron group descriptors per core",
    "modes": "mode memory entries per core (complex S4D modes of channel neurons)",
    "neuron_lanes": "mode entries a MODES instruction updates per cycle: 1, 2, 4 or 8",
    "state_regs": "persistent registers per neuron, 1..8",
    "coefs": "coefficients per neuron (the ISA addresses 8)",
    "state_width": "bits of neuron state and graded spike payloads (signed)",
    "coef_width": "bits of a neuron coefficient (signed)",
    "weight_width": "bits of a synaptic weight (signed)",
    "acc_width": "bits of a dendrite accumulator (signed)",
    "router_fifo_depth": "input buffer depth of each router port",
}


def fabric_flag(name: str) -> str:
    """The flag of a FabricConfig field: ``synapse_rows`` -> ``--synapse-rows``."""
    return "--" + name.replace("_", "-")


def add_fabric_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--fabric FILE``, ``--mesh WxH`` and a flag per FabricConfig field; ``what`` says what
    the fabric is for (shown in the group's description)."""
    g = parser.add_argument_group(
        "fabric", f"{what}. Defaults, then --fabric, then the flags: a flag overrides the file.")
    g.add_argument("--fabric", metavar="FILE", default=None,
                   help="fabric.json written by 'neuroloom generate' (its 'config'), or a JSON "
                        "object of FabricConfig fields")
    g.add_argument("--mesh", metavar="WxH", default=None,
                   help="mesh_w x mesh_h tiles, e.g. 2x2")
    for f in dataclasses.fields(FabricConfig):
        g.add_argument(fabric_flag(f.name), dest=f"fabric_{f.name}", type=int, default=None,
                       metavar="N",
                       help=f"{FIELD_HELP.get(f.name, f.name)} (default {f.default})")


@dataclass
class FabricRequest:
    """The fabric a user asked for: ``given`` holds the fields set by ``--fabric`` or a flag,
    ``source`` where each came from."""
    given: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    @property
    def mesh_fixed(self) -> bool:
        return "mesh_w" in self.given or "mesh_h" in self.given

    def config(self, base: FabricConfig | None = None) -> FabricConfig:
        """``base`` (default: the defaults) with the given fields. Raises ValueError naming a
        bad field."""
        return FabricConfig(**{**(base or FabricConfig()).to_dict(), **self.given})


def _read_fabric_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file", str(p))
    try:
        desc = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{p}: not JSON ({e}); give the fabric.json that 'neuroloom generate' "
                       "writes") from None
    cfg = desc.get("config", desc) if isinstance(desc, dict) else None
    if not isinstance(cfg, dict):
        raise CLIError(f"{p}: no fabric configuration (a JSON object with a 'config' object, as "
                       "'neuroloom generate' writes, or of FabricConfig fields)")
    known = {f.name for f in dataclasses.fields(FabricConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise CLIError(f"{p}: unknown fabric field(s) {', '.join(unknown)}; known: "
                       f"{', '.join(sorted(known))}")
    bad = [k for k, v in cfg.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise CLIError(f"{p}: {bad[0]}={cfg[bad[0]]!r} must be an integer")
    return cfg


def fabric_request(args) -> FabricRequest:
    """The fabric options of ``args`` as a :class:`FabricRequest`."""
    req = FabricRequest()
    if args.fabric is not None:
        for k, v in _read_fabric_file(args.fabric).items():
            req.given[k], req.source[k] = v, args.fabric
    flags = {f.name: getattr(args, f"fabric_{f.name}") for f in dataclasses.fields(FabricConfig)}
    if args.mesh is not None:
        if flags["mesh_w"] is not None or flags["mesh_h"] is not None:
            raise CLIError("give --mesh WxH or --mesh-w/--mesh-h, not both")
        mesh = FabricConfig.parse_mesh(args.mesh)      # ValueError: not WxH
        for k in ("mesh_w", "mesh_h"):
            req.given[k], req.source[k] = getattr(mesh, k), "--mesh"
    for k, v in flags.items():
        if v is not None:
            req.given[k], req.source[k] = v, fabric_flag(k)
    return req


def note(line: str) -> None:
    """A note for the user (stderr: never mixed with the results)."""
    print(line, file=sys.stderr)


def load_target(path: str, args, req: FabricRequest, data: deploy.Calibration,
                mode: str = "pipelined") -> deploy.Target:
    """``MODEL_OR_IMAGE``: an image must match the requested fabric; a model is compiled for
    it (the mesh grows to fit unless the request fixes it). A float model is calibrated on
    ``data`` (None: the digits train split), which is said on stderr with its saturation
    report."""
    p = Path(path)
    if p.exists() and deploy.is_image(p):
        given = [flag for flag, on in (("--activation", getattr(args, "activation", None)),
                                       ("--no-residual", getattr(args, "no_residual", False)),
                                       ("--pooling", getattr(args, "pooling", None)),
                                       ("--calibrate", getattr(args, "calibrate", None)),
                                       ("--mapping", getattr(args, "mapping", None)))
                 if on]
        if given:
            raise CLIError(f"{' and '.join(given)} describe(s) how a model is imported, "
                           f"quantized or compiled; {p} is a config image, already compiled: "
                           f"drop {' and '.join(given)}")
        target = deploy.load_target(p)
        deploy.check_fabric(target.image, req.given, req.source, where=str(p))
        return target
    activation, residual, pooling = import_options(args, p)
    return deploy.load_target(p, data, req.config(), mode=mode, mesh_fixed=req.mesh_fixed,
                              row_budget=getattr(args, "row_budget", None),
                              activation=activation, residual=residual, pooling=pooling,
                              mapping=args.mapping, note=note, report=note)


# -- data set --------------------------------------------------------------------------------------

#: every name of a bundled data set -> its canonical (library) name
DATASET_ALIASES = {**{n: n for n in DATASETS}, **_LIBRARY_ALIASES}


def add_dataset_options(parser: argparse.ArgumentParser, what: str = "the data set") -> None:
    g = parser.add_argument_group("data set", what)
    g.add_argument("--dataset", nargs="+", metavar=("NAME|FILE.npz", "PATH"),
                   help="digits (default), pdigits (= digits-permuted), mnist PATH, pmnist "
                        "PATH (= mnist-permuted), cifar10 PATH, or your own FILE.npz with "
                        "X_train, y_train, X_test, y_test (and optionally len_train, len_test)")
    g.add_argument("--data", default=None, metavar="PATH",
                   help="folder with the data set's files (same as the PATH of --dataset)")


def dataset_spec(args, default: str | None = "digits") -> tuple[str, str | None] | None:
    """(library data set name, folder or None) of ``--dataset``/``--data``; ``default`` when
    neither names one (None: no data set)."""
    spec = args.dataset or ([default] if default else None)
    if spec is None:
        return None
    if len(spec) > 2:
        raise CLIError("--dataset takes a name and at most one PATH")
    if is_dataset_file(spec[0]):
        if len(spec) == 2 or args.data is not None:
            raise CLIError(f"--dataset {spec[0]} is a data set file: give no folder with it "
                           "(PATH and --data are for mnist and cifar10)")
        if not Path(spec[0]).is_file():
            raise FileNotFoundError(2, "No such data set file", spec[0])
        return spec[0], None
    name = canonical_name(spec[0])
    if name is None:
        raise CLIError(f"unknown dataset {spec[0]!r}; choose one of "
                       f"{', '.join(sorted(DATASET_ALIASES))}, or give a FILE.npz")
    return name, spec[1] if len(spec) == 2 else args.data


def dataset_from_args(args, required: bool = True) -> SequenceData | None:
    """The data set of ``--dataset`` (digits when required and not given)."""
    spec = dataset_spec(args, "digits" if required else None)
    return None if spec is None else load_dataset(*spec)


def model_labels(target: deploy.Target) -> list | None:
    """The original labels a model or image records (class index -> label), or None."""
    for meta in (target.image.model, getattr(target.qmodel, "meta", None),
                 getattr(target.float_model, "meta", None)):
        if meta and meta.get("labels") is not None:
            return list(meta["labels"])
    return None


def labels_for_model(data: SequenceData, labels: list | None, y):
    """The labels ``y`` (class indices of ``data``) as the model's class indices: the same
    when the model records no labels or the same ones; else remapped by label, and a label the
    model does not know is an error."""
    if labels is None or data.labels is None or list(data.labels) == labels:
        return y
    where = {str(v): i for i, v in enumerate(labels)}
    unknown = sorted({str(v) for v in data.labels} - set(where))
    if unknown:
        raise CLIError(f"{data.name} has label(s) {', '.join(unknown[:5])} that the model does "
                       f"not know (its classes: {', '.join(map(str, labels))})")
    return np.array([where[str(v)] for v in data.labels])[y]


# -- calibration -----------------------------------------------------------------------------------

def add_calibration_options(parser: argparse.ArgumentParser) -> None:
    """``--calibrate DATASET|FILE`` and ``--data PATH``: what a float model is quantized on."""
    g = parser.add_argument_group(
        "calibration", "what a float model or a Gu checkpoint is quantized on (a quantized "
                       "NeuroLoom model needs none)")
    g.add_argument("--calibrate", metavar="DATASET|FILE", default=None,
                   help=f"a data set ({', '.join(DATASET_ALIASES)}, or a data set .npz with "
                        f"X_train, y_train, X_test, y_test: its first "
                        f"{deploy.CALIBRATION_SEQUENCES} train sequences) or a token file "
                        "(.npy/.npz/.csv/.txt, (K, d_in) or (B, K, d_in): all of it); default "
                        "digits, said on stderr")
    g.add_argument("--data", default=None, metavar="PATH",
                   help="folder with the files of the --calibrate data set (mnist, cifar10)")


def calibration_from_args(args) -> deploy.Calibration:
    """``--calibrate``: a data set, a token file path, or None (the default, digits)."""
    if args.calibrate is None:
        if args.data is not None:
            raise CLIError("--data PATH is the folder of a --calibrate data set (mnist, "
                           "cifar10); give --calibrate too")
        return None
    name = DATASET_ALIASES.get(args.calibrate)
    if name is not None:
        return load_dataset(name, args.data)
    if args.data is None and npz_has_dataset(args.calibrate):
        return load_dataset(args.calibrate)
    if args.data is not None:
        raise CLIError(f"--data PATH is for a --calibrate data set, {args.calibrate} is not one")
    if not Path(args.calibrate).is_file():
        raise CLIError(f"--calibrate {args.calibrate}: neither a data set "
                       f"({', '.join(sorted(DATASET_ALIASES))}) nor a token file")
    return args.calibrate


# -- backend ---------------------------------------------------------------------------------------

BACKENDS = ("golden", "verilator")


def add_backend_options(parser: argparse.ArgumentParser, default: str = "golden",
                        serial: bool = False) -> None:
    """``--backend`` (and ``--waves``); ``serial``: also a board on a serial port (``--backend
    serial --port --baud``)."""
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKENDS + (("serial",) if serial else ()),
                   default=default,
                   help=f"the golden model or the fabric RTL simulated by Verilator "
                        f"{'or a board on a serial port ' if serial else ''}"
                        f"(default {default}; the first Verilator use of a fabric builds it, "
                        f"minutes)")
    g.add_argument("--waves", action="store_true",
                   help="verilator: write a waveform (FST) into the build folder")
    if serial:
        g.add_argument("--port", default=None,
                       help="serial: the board's USB-UART (e.g. /dev/ttyUSB0)")
        g.add_argument("--baud", type=int, default=None,
                       help="serial: the UART rate the board was built with (default 3000000; "
                            "'neuroloom fpga build' reports it)")


def check_backend(args) -> None:
    if args.waves and args.backend != "verilator":
        raise CLIError("--waves needs --backend verilator")
    serial = getattr(args, "backend", None) == "serial"
    if serial and not getattr(args, "port", None):
        raise CLIError("--backend serial needs --port (the board's USB-UART, e.g. /dev/ttyUSB0)")
    if not serial and (getattr(args, "port", None) or getattr(args, "baud", None)):
        raise CLIError("--port and --baud need --backend serial")


# -- Gu checkpoint import --------------------------------------------------------------------------

#: ``--pooling`` when not given (for a model; an image given with it is refused)
DEFAULT_POOLING = POOLINGS[0]


def add_import_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "Gu checkpoints", "what a state_dict does not record (.pt, or .npz with no .json beside)")
    g.add_argument("--activation", default=None,
                   help="the layers' activation (the fabric runs 'relu')")
    g.add_argument("--no-residual", action="store_true",
                   help="the layers have no residual connection")
    g.add_argument("--pooling", choices=POOLINGS, default=None,
                   help=f"how the decoder's outputs become logits (default {DEFAULT_POOLING}: "
                        f"integrated over the sequence, the only pooling the fabric runs); a "
                        f"model only, an image is already compiled")


def add_mapping_option(parser: argparse.ArgumentParser) -> None:
    """``--mapping``: how S4D layers become neurons when a model is compiled."""
    parser.add_argument("--mapping", choices=MAPPINGS, default=None,
                        help=f"S4D layers as channel neurons (one neuron per channel, all its "
                             f"modes; one stage per layer) or one neuron per complex mode "
                             f"(default {DEFAULT_MAPPING}); a model only, an image is already "
                             f"compiled")


def import_options(args, path) -> tuple[str | None, bool | None, str]:
    """(activation, residual, pooling) for :func:`neuroloom.firmware.importer.import_s4`;
    activation and residual are refused for a model that is not a checkpoint (a NeuroLoom model
    records both).

    ``--pooling`` and ``--mapping`` default to None, so that an image given with them is
    refused (:func:`load_target`); for a model, which this is called for, the defaults are
    filled into ``args`` here (``args.pooling``, ``args.mapping``: the values used)."""
    if getattr(args, "pooling", None) is None:
        args.pooling = DEFAULT_POOLING
    if getattr(args, "mapping", None) is None:
        args.mapping = DEFAULT_MAPPING
    activation = getattr(args, "activation", None)
    residual = False if getattr(args, "no_residual", False) else None
    if (activation is not None or residual is not None) and not deploy.is_checkpoint(path):
        raise CLIError(f"--activation and --no-residual describe Gu checkpoints (.pt, or .npz "
                       f"with no .json); {path} is a NeuroLoom model, which records them: drop "
                       "those options")
    return activation, residual, args.pooling
