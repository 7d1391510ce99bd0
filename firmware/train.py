"""Training n-S4D classifiers for the fabric (the library behind ``neuroloom train``).

Three phases, all on the CPU:

1. **float pre-training** in the convolutional form (PyTorch, FFT convolution, float32), Gu's
   recipe: AdamW, a lower learning rate and no weight decay on the SSM parameters, cosine
   schedule; running logits summed over the sequence, trained with cross-entropy on the last
   token's logits / K (= mean pooling). Sequences of different lengths (padded at the end) are
   pooled over their true length only: the logits after their own last token / its length, so
   the padding is never learned and the model streamed at true length gives the same result;
2. **PTQ** (:func:`~firmware.quantize.quantize`) with calibration sequences from the train split;
3. **QAFT** (:class:`~firmware.qaft.QAFTModel`): fine-tuning through the exact quantized forward.

The result is written in NeuroLoom's format: ``<out>-float.{npz,json}`` (the float model after
pre-training) and ``<out>-q.{npz,json}`` (the deployed QModel), each with the command, seed and
accuracies in its metadata. Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from neuroloom.contract.config import FabricConfig

from .datasets import SequenceData, load_dataset
from .evaluate import accuracy_float, accuracy_q
from .model import FloatLayer, FloatModel
from .qmodel import QModel

__all__ = ["TrainResult", "train", "accuracy_float", "accuracy_q"]


@dataclass
class TrainResult:
    float_model: FloatModel
    qmodel: QModel
    metrics: dict = field(default_factory=dict)
    paths: list = field(default_factory=list)


def _torch_model(model: FloatModel):
    """A PyTorch module with the FloatModel's parameters, computing its convolutional form."""
    import torch
    from torch import nn

    from .qaft import attach_parameters

    class TorchS4D(nn.Module):
        def __init__(self):
            super().__init__()
            attach_parameters(self, model, torch.float32)

        def ssm_params(self):
            return [p for ly in self.layers for n, p in ly.named_parameters()
                    if n in ("log_dt", "log_A_real", "A_imag")]

        def forward(self, x, lengths=None):                            # x (B, K, d_in)
            K = x.shape[1]
            z = x @ self.enc_W.T + self.enc_b                              # (B, K, H)
            for ly in self.layers:
                A = torch.complex(-torch.exp(ly.log_A_real), ly.A_imag)     # (H, N)
                dtA = A * torch.exp(ly.log_dt)[:, None]
                Cp = torch.complex(ly.C_re, ly.C_im) * (torch.exp(dtA) - 1.0) / A
                kern = 2 * torch.einsum("hn,hnl->hl", Cp,
                                        torch.exp(dtA[:, :, None] * torch.arange(K))).real
                u = z.transpose(1, 2)                                      # (B, H, K)
                y = torch.fft.irfft(torch.fft.rfft(u, n=2 * K) * torch.fft.rfft(kern, n=2 * K),
                                    n=2 * K)[..., :K] + ly.D[:, None] * u
                z = torch.relu(y.transpose(1, 2)) @ ly.W.T + ly.b          # (B, K, H)
            d = z @ self.dec_W.T + self.dec_b                              # (B, K, classes)
            if lengths is not None:                # sum pooling over each true length only
                d = d * (torch.arange(K)[None, :] < lengths[:, None])[..., None]
            return d.sum(1)                                                # (B, classes)

        def to_float(self) -> FloatModel:
            def n(p):
                return p.detach().double().numpy().copy()

            layers = [FloatLayer(n(ly.log_dt), n(ly.log_A_real), n(ly.A_imag),
                                 n(ly.C_re) + 1j * n(ly.C_im), n(ly.D), n(ly.W), n(ly.b))
                      for ly in self.layers]
            return FloatModel(n(self.enc_W), n(self.enc_b), layers, n(self.dec_W),
                              n(self.dec_b), dict(model.meta))

    return TorchS4D()


def _batches(n, batch, rng):
    idx = rng.permutation(n)
    return [idx[i:i + batch] for i in range(0, n, batch)]



def _one_cycle(opt, max_lr, total: int):
    """One-cycle schedule over ``total`` steps (warm-up 10 %, at least 1.5 steps, so that both
    phases have a length: OneCycleLR divides by them); a constant rate for runs of under
    3 steps."""
    import torch

    if total < 3:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                               pct_start=max(0.1, 1.5 / total))

def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def train(dataset: str | SequenceData = "digits", *, H: int = 16, N: int = 8, L: int = 2,
          epochs: int = 60, qaft_epochs: int = 3, batch: int = 32, lr: float = 1e-2,
          ssm_lr: float = 1e-3,
          qaft_lr: float = 2e-4, weight_decay: float = 0.01, seed: int = 0,
          data_path=None, out=None, calib: int = 512, max_steps: int | None = None,
          cfg: FabricConfig | None = None, progress: bool = True, command: str | None = None,
          threads: int | None = 1, log=print) -> TrainResult:
    """Train, quantize and fine-tune an n-S4D classifier; optionally write it to ``out``.

    ``dataset``: a bundled data set's name, a ``.npz`` file (``data_path`` is the folder of
    mnist/cifar10), or a :class:`~neuroloom.firmware.datasets.SequenceData` (arrays, e.g. from
    :func:`~neuroloom.firmware.datasets.from_arrays`); sequences of different lengths are
    trained and evaluated at their true lengths, and the original labels are recorded in the
    models' metadata (``labels``: class index -> label). ``max_steps`` caps the optimizer
    steps of each phase (smoke tests). Returns the float model (after pre-training), the
    QModel (after QAFT) and metrics (accuracies, times).
    """
    import torch

    from .importer import save_float, save_qmodel
    from .qaft import QAFTModel
    from .quantize import accumulator_bounds, quantize

    cfg = cfg or FabricConfig()
    if threads:
        torch.set_num_threads(threads)  # small tensors: more threads only add overhead
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load_dataset(dataset, data_path)
    init = FloatModel.random(data.d_in, H, N, L, data.classes, seed=seed)
    init.meta = {"dataset": data.name, "seed": seed}
    ltr = None if data.len_train is None else torch.tensor(data.len_train)
    ntr = ltr.to(torch.float32) if ltr is not None else None
    net = _torch_model(init)
    ssm = {id(p) for p in net.ssm_params()}
    opt = torch.optim.AdamW(
        [{"params": [p for p in net.parameters() if id(p) not in ssm]},
         {"params": net.ssm_params(), "lr": ssm_lr, "weight_decay": 0.0}],
        lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(data.x_train) / batch)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps,
                                                                   epochs * steps_per_epoch)
    sched = _one_cycle(opt, [lr, ssm_lr], total)
    xtr = torch.tensor(data.x_train, dtype=torch.float32)
    ytr = torch.tensor(data.y_train)
    K = data.seq_len
    t0, step = time.time(), 0
    bar = _progress(total, "float pre-training", progress)
    while step < total:
        for idx in _batches(len(xtr), batch, rng):
            if step >= total:
                break
            if ltr is None:
                loss = torch.nn.functional.cross_entropy(net(xtr[idx]) / K, ytr[idx])
            else:                                  # mean pooling over each true length
                loss = torch.nn.functional.cross_entropy(
                    net(xtr[idx], ltr[idx]) / ntr[idx, None], ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    fmodel = net.to_float()
    lte = data.len_test
    metrics = {"float_acc": accuracy_float(fmodel, data.x_test, data.y_test, lte),
               "float_train_s": round(time.time() - t0, 1)}
    log(f"float: test accuracy {metrics['float_acc']:.4f} ({metrics['float_train_s']} s)")

    cal = data.x_train[rng.permutation(len(data.x_train))[:calib]]
    q, report = quantize(fmodel, cal, cfg)
    metrics["ptq_acc"] = accuracy_q(q, data.x_test, data.y_test, cfg, lengths=lte)
    metrics["ptq_report"] = str(report)
    log(f"PTQ: test accuracy {metrics['ptq_acc']:.4f}; {report}")

    if qaft_epochs > 0:
        t1 = time.time()
        scales = _scales(q)
        qnet = QAFTModel(fmodel, scales, cfg)
        qopt = torch.optim.Adam(qnet.parameters(), lr=qaft_lr)
        tq = torch.tensor(q.quantize_input(data.x_train, cfg), dtype=torch.float64)
        qtotal = qaft_epochs * steps_per_epoch if max_steps is None else min(
            max_steps, qaft_epochs * steps_per_epoch)
        bar, step = _progress(qtotal, "QAFT", progress), 0
        while step < qtotal:
            for idx in _batches(len(tq), batch, rng):
                if step >= qtotal:
                    break
                run = qnet(tq[idx])                                    # (b, K, classes)
                if ltr is None:
                    logits = run[:, -1] / (scales.out_scale * K)
                else:                              # at each sequence's last true token
                    n = ltr[idx]
                    logits = run[torch.arange(len(idx)), n - 1] / (
                        scales.out_scale * n.to(run.dtype)[:, None])
                loss = torch.nn.functional.cross_entropy(logits, ytr[idx])
                qopt.zero_grad()
                loss.backward()
                qopt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        qq = qnet.to_qmodel()
        metrics["qaft_acc"] = accuracy_q(qq, data.x_test, data.y_test, cfg, lengths=lte)
        metrics["qaft_train_s"] = round(time.time() - t1, 1)
        log(f"QAFT: test accuracy {metrics['qaft_acc']:.4f} ({metrics['qaft_train_s']} s)")
        q = qq  # no model selection on the test split: QAFT's result is the result
        limit = (1 << (cfg.acc_width - 1)) - 1
        if max(accumulator_bounds(q, cfg).values()) > limit:
            log("QAFT moved a worst-case accumulator bound past the accumulator; re-running PTQ "
                "on the fine-tuned float parameters")
            q, _ = quantize(qnet.to_float(), cal, cfg)
    metrics["q_acc"] = accuracy_q(q, data.x_test, data.y_test, cfg, lengths=lte)
    metrics["neurons"] = fmodel.neurons()

    info = {"dataset": data.name, "seed": seed, "H": H, "N": N, "L": L,
            "float_acc": metrics["float_acc"], "q_acc": metrics["q_acc"]}
    if data.labels is not None:
        info["labels"] = list(data.labels)
    if command:
        info["command"] = command
    fmodel.meta = {**fmodel.meta, **info}
    q.meta = {**q.meta, **info}
    result = TrainResult(fmodel, q, metrics)
    if out is not None:
        result.paths = [*save_float(fmodel, f"{out}-float"), *save_qmodel(q, f"{out}-q")]
        log("wrote " + ", ".join(str(p) for p in result.paths))
    return result


def _scales(q: QModel):
    from .quantize import Scales
    return Scales.from_dict(q.meta["scales"])
