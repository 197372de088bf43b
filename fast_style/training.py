"""The LightningModule that trains a transform network against a frozen perceptual loss."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar, cast, overload

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torchvision.utils import make_grid

from fast_style.errors import FastStyleError
from fast_style.losses import PerceptualLoss
from fast_style.losses.stability import noise_stability
from fast_style.model_file import new_record, record_from_checkpoint
from fast_style.models import TransformNetwork, model_config

__all__ = ["CompileOrEager", "StyleTransferModule"]

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# Scheduler arguments that mean the run's length in steps; None asks for it.
_RUN_LENGTH_ARGUMENTS = ("T_max", "total_steps")


def _keep_implementation_flags(
    optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]
) -> dict[str, Any]:
    """Load-state-dict pre-hook: saved hyperparameters, but this run's ``fused`` / ``foreach`` / ``capturable``.

    A checkpoint written with fused Adam on a GPU can then resume on a CPU (and the other way round),
    and Adam's step counters land on the device the chosen implementation expects.
    """
    flags = ("fused", "foreach", "capturable")
    groups = []
    for current, saved in zip(optimizer.param_groups, state_dict["param_groups"], strict=False):
        saved = dict(saved)
        saved.update({k: current[k] for k in flags if k in current})
        groups.append(saved)
    return {**state_dict, "param_groups": groups}


class CompileOrEager:
    """Calls ``torch.compile(module)``; if compiling fails on the first call, warns and runs eagerly.

    The compiled wrapper is kept outside the module tree, so parameter names, ``state_dict`` keys and
    exports are those of the plain module. Compilation happens on the first call (TorchInductor needs
    a working C++ compiler on the CPU); an error there, for any reason, switches to eager execution
    for the rest of the run instead of ending it. A genuine error of the module shows up again eagerly.
    """

    def __init__(self, module: nn.Module, backend: str | Callable[..., Any], what: str) -> None:
        self.module = module
        self.what = what
        self._checked = False
        self._compiled: Callable[..., Any] | None = None
        try:
            self._compiled = torch.compile(module, backend=backend)
        except Exception as exc:
            self._fall_back(exc)

    def _fall_back(self, exc: Exception) -> None:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.warning("torch.compile of the %s failed (%s); continuing without compiling it", self.what, reason)
        self._compiled = None

    @property
    def compiled(self) -> bool:
        """False once a failed compilation switched this call to eager execution."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.module(*args, **kwargs)
        if self._checked:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as exc:
            self._fall_back(exc)
            return self.module(*args, **kwargs)
        self._checked = True
        return out


_Destination = TypeVar("_Destination", bound=dict[str, Any])  # state_dict's destination


class StyleTransferModule(pl.LightningModule):
    """Trains ``net`` to minimise ``loss(net(x), x)`` on content photos ``x``.

    Only ``net`` is trainable and only ``net`` is saved: the frozen loss network is rebuilt from the
    config on every run, so checkpoints stay small and never carry VGG weights.

    ``channels_last`` puts both networks and every batch in channels-last memory format;
    ``compile_net`` and ``compile_loss`` run them through ``torch.compile`` (``CompileOrEager``); the
    modules themselves are untouched, so checkpoints and exports do not change.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: PerceptualLoss,
        optimizer: OptimizerFactory = partial(torch.optim.Adam, lr=1e-3),  # noqa: B008 (immutable)
        scheduler: SchedulerFactory | None = None,
        log_images_every_n_steps: int = 200,
        style_name: str = "",
        style_info: dict[str, Any] | None = None,
        style_names: list[str] | None = None,
        style_slots: list[int] | None = None,
        run_config: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile_net: bool = False,
        compile_loss: bool = False,
        compile_backend: str = "inductor",
        stability_weight: float = 0.0,
        stability_noise: float = 0.03,
        stability_shift: int = 0,
    ) -> None:
        super().__init__()
        self.stability_weight = float(stability_weight)
        self.stability_noise = float(stability_noise)
        self.stability_shift = int(stability_shift)
        self.channels_last = channels_last
        if channels_last:
            net.to(memory_format=torch.channels_last)
            loss.to(memory_format=torch.channels_last)
        # Kept in a dict: a module assigned as an attribute would join the state_dict a second time.
        self._compiled: dict[str, CompileOrEager] = {}
        if compile_net:
            self._compiled["net"] = CompileOrEager(net, compile_backend, "transform network")
        if compile_loss:
            self._compiled["loss"] = CompileOrEager(loss, compile_backend, "perceptual loss")
        self.net = net
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.log_images_every_n_steps = log_images_every_n_steps
        self.style_name = style_name
        self.style_info = dict(style_info or {})
        # Multi-style: the network's styles in the order of its norms, and the ones trained here (all,
        # unless styles are being added to a trained network), in the order of the loss's targets.
        self.style_names = list(style_names or [])
        self.style_slots = list(range(len(self.style_names))) if style_slots is None else list(style_slots)
        if len(self.style_names) > 1 and (
            len(self.style_slots) != loss.num_style_targets
            or len(self.style_names) != getattr(net, "num_styles", 1)
            or not set(self.style_slots) <= set(range(len(self.style_names)))
        ):
            raise ValueError(
                f"training styles {self.style_slots} of {len(self.style_names)} with {loss.num_style_targets} "
                f"style targets and a network of {getattr(net, 'num_styles', 1)} styles"
            )
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self._bad_indices: set[int] = set()
        self._samples: torch.Tensor | None = None
        # Training time so far (CPU seconds of this process and wall seconds), carried across resumes:
        # learning curves plot quality against it.
        self._spent = {"cpu_seconds": 0.0, "wall_seconds": 0.0}
        self._clock: tuple[float, float] | None = None

    # -- the step -------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(
        self, batch: tuple[torch.Tensor | None, list[int]], batch_idx: int
    ) -> torch.Tensor | None:
        images, bad = batch
        self._count_bad(bad)
        if images is None:
            return None  # every image of this batch was unreadable: skip the step
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        net = self._compiled.get("net", self.net)
        loss = self._compiled.get("loss", self.loss_fn)
        weights = self._batch_style_weights(images) if len(self.style_names) > 1 else None
        outputs = net(images) if weights is None else net(images, style=weights)
        terms = (
            self._multi_style_terms(loss, outputs, images)
            if weights is not None
            else dict(loss(outputs, images))
        )
        if self.stability_weight > 0:
            # Gupta et al. (2017): a noisy copy of the batch must paint the same picture. A moved copy is
            # a smaller crop: the compiled network would recompile for its shape with symbolic sizes,
            # which fails in some torch versions, so that pass runs eagerly.
            stable = noise_stability(
                net if self.stability_shift == 0 else self.net,
                images,
                outputs,
                self.stability_noise,
                weights,
                shift=self.stability_shift,
            )
            terms["stability"] = self.stability_weight * stable
            terms["total"] = terms["total"] + terms["stability"]
        total = terms["total"]
        if not torch.isfinite(total):
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            raise FastStyleError(
                f"non-finite loss at step {self.global_step} ({detail}); training stopped. "
                "Lower optimizer.lr or the loss weights, or resume from an earlier checkpoint."
            )
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items() if k != "total"}, on_step=True)
        self.log("train/total", total.detach(), on_step=True, prog_bar=True)
        return total

    def _style_index(self, images: torch.Tensor) -> torch.Tensor:
        """Which trained style (a position in ``style_slots``) each image of the batch gets:
        ``(step * B + b) mod S`` for image ``b``, so consecutive images cycle through the styles, every
        style gets the same share and a batch of at least S images sees all of them.
        """
        batch = images.shape[0]
        return (torch.arange(batch, device=images.device) + self.global_step * batch) % len(self.style_slots)

    def _batch_style_weights(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, num_styles)`` one-hot weights of the styles ``_style_index`` gives the batch."""
        slots = torch.tensor(self.style_slots, device=images.device)[self._style_index(images)]
        return torch.nn.functional.one_hot(slots, len(self.style_names)).to(images.dtype)

    def _multi_style_terms(
        self, loss: Any, outputs: torch.Tensor, images: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss terms of a multi-style batch (styles by ``_style_index``); each style's mean term is
        logged as ``train/style/NAME``.
        """
        index = self._style_index(images)
        if len(self.style_slots) == 1:  # one style added to a trained network: the loss has its one target
            terms = dict(loss(outputs, images))
            self.log(
                f"train/style/{self.style_names[self.style_slots[0]]}", terms["style"].detach(), on_step=True
            )
            return terms
        terms = dict(loss(outputs, images, style_index=index))
        each = terms.pop("style_each").detach()
        for style in index.unique().tolist():
            name = self.style_names[self.style_slots[style]]
            self.log(f"train/style/{name}", each[index == style].mean(), on_step=True)
        return terms

    def on_after_backward(self) -> None:
        # Styles kept from the network this run started from: their scales and shifts stay as they were.
        if len(self.style_slots) == len(self.style_names):
            return
        kept = [i for i in range(len(self.style_names)) if i not in self.style_slots]
        for norm in cast(TransformNetwork, self.net).instance_norms():
            for param in (norm.weight, norm.bias):
                if param is not None and param.grad is not None and param.dim() == 2:
                    param.grad[kept] = 0

    def _count_bad(self, bad: list[int]) -> None:
        if not bad:
            return
        self._bad_indices.update(bad)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        allowed = datamodule.max_bad_fraction * len(datamodule.files)
        log.warning("%d unreadable training image(s) skipped so far", len(self._bad_indices))
        if len(self._bad_indices) > allowed:
            raise FastStyleError(
                f"{len(self._bad_indices)} of {len(datamodule.files)} training images are unreadable, more "
                f"than data.max_bad_fraction={datamodule.max_bad_fraction}; check {datamodule.root}"
            )

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.net.parameters() if p.requires_grad])
        optimizer.register_load_state_dict_pre_hook(_keep_implementation_flags)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self._with_run_length(self.scheduler_factory)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _with_run_length(self, factory: SchedulerFactory) -> SchedulerFactory:
        """``factory`` with a run-length argument left ``None`` (``T_max``, ``total_steps``) set to the run's steps."""
        if not isinstance(factory, partial):
            return factory
        missing = [k for k in _RUN_LENGTH_ARGUMENTS if k in factory.keywords and factory.keywords[k] is None]
        if not missing:
            return factory
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps) or steps <= 0:
            raise FastStyleError(
                f"scheduler.{missing[0]}=null takes the run's length, but this run has no end; "
                "set trainer.max_steps or trainer.max_epochs, or give the scheduler a length"
            )
        return partial(factory, **{k: int(steps) for k in missing})

    # -- TensorBoard samples --------------------------------------------------------------------
    def on_train_start(self) -> None:
        self._clock = (time.process_time(), time.perf_counter())
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "sample_images"):
            self._samples = datamodule.sample_images()
        self._log_samples()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.log_images_every_n_steps
        if n and n > 0 and self.global_step % n == 0:
            self._log_samples()

    def on_train_end(self) -> None:
        self._log_samples()

    @torch.no_grad()
    def _log_samples(self) -> None:
        if self._samples is None or not self.trainer.is_global_zero:
            return
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        content = self._samples.to(self.device)
        was_training = self.net.training
        self.net.eval()
        # ``forward`` rather than ``__call__``: eager even when the network is compiled, so these few
        # no-grad samples of another batch size cost no second compilation.
        count = max(1, len(self.style_names))
        if count > 1:  # one row per photo: the photo, then each style
            net = cast(TransformNetwork, self.net)
            columns = [
                net.forward(content, style=net.style_weights(s, content.shape[0])).clamp(0, 1)
                for s in range(count)
            ]
        else:
            columns = [self.net.forward(content).clamp(0, 1)]
        self.net.train(was_training)
        pairs = torch.stack([content, *columns], dim=1).flatten(0, 1)  # content, stylized, content, ...
        grid = make_grid(pairs.float().cpu(), nrow=1 + len(columns), padding=2, pad_value=1.0)
        logger.experiment.add_image("samples/content_stylized", grid, global_step=self.global_step)

    # -- checkpoints: the transform network only -------------------------------------------------
    @overload
    def state_dict(
        self, *, destination: _Destination, prefix: str = ..., keep_vars: bool = ...
    ) -> _Destination: ...

    @overload
    def state_dict(self, *, prefix: str = ..., keep_vars: bool = ...) -> dict[str, Any]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The module's state without the frozen loss network, which every run rebuilds from its config."""
        state = super().state_dict(*args, **kwargs)
        for key in [k for k in state if k.startswith("loss_fn.")]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            missing = [k for k in result.missing_keys if not k.startswith("loss_fn.")]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"checkpoint does not match the network: missing {missing[:5]}, "
                    f"unexpected {result.unexpected_keys[:5]}"
                )
        return result

    def training_time(self) -> dict[str, float]:
        """CPU and wall seconds spent training so far, this run and the runs it resumed."""
        spent = dict(self._spent)
        if self._clock is not None:
            spent["cpu_seconds"] += time.process_time() - self._clock[0]
            spent["wall_seconds"] += time.perf_counter() - self._clock[1]
        return spent

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = model_config(self.net)
        checkpoint["fast_style"] = new_record(
            config["arch"],
            config["kwargs"],
            multiple=int(self.net.multiple),  # type: ignore[arg-type]
            style_name=self.style_name,
            styles=self.style_names if len(self.style_names) > 1 else None,
            loss={**self.loss_fn.settings(), **self.style_info},
            global_step=self.global_step,
            epoch=self.current_epoch,
            training_time=self.training_time(),
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record = record_from_checkpoint(checkpoint) if "fast_style" in checkpoint else {"training": {}}
        spent = record["training"].get("training_time") or {}
        self._spent = {k: float(spent.get(k, 0.0)) for k in self._spent}
