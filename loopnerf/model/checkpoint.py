"""Checkpoints: model weights, Adam state and RNG state in one safetensors file.

Written atomically (temporary file + rename) so an interrupted run never leaves a
broken checkpoint; read without unpickling anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from loopnerf.errors import ConfigError


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None, meta: dict) -> None:
    """Write `model` parameters/buffers, `optimizer` moments and `generator` state to `path`."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                st = optimizer.state.get(p)
                if not st:
                    continue
                n = names[id(p)]
                tensors[f"optim.{n}.exp_avg"] = st["exp_avg"].contiguous().cpu()
                tensors[f"optim.{n}.exp_avg_sq"] = st["exp_avg_sq"].contiguous().cpu()
                tensors[f"optim.{n}.step"] = torch.as_tensor(st["step"], dtype=torch.float64).reshape(1).cpu()
    if generator is not None:
        tensors["rng.torch"] = generator.get_state().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"loopnerf": json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None) -> dict:
    """Load what `save_checkpoint` wrote into `model` (and optimizer / generator); returns meta."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint there")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("loopnerf", "{}"))
    except Exception as err:  # safetensors raises several types for damaged files
        raise ConfigError(f"{path}: not a readable LoopNeRF checkpoint ({err})") from None
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    for name, buf in model.state_dict().items():
        # written before the dynamic region existed: the field was dynamic everywhere
        if name.endswith("dynamic_region.grid") and name not in state:
            state[name] = torch.ones_like(buf)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path}: checkpoint does not match the model config ({str(err).splitlines()[0]})") from None
    if optimizer is not None:
        params = dict(model.named_parameters())
        for n, p in params.items():
            if f"optim.{n}.exp_avg" in tensors:
                optimizer.state[p] = {
                    "step": torch.tensor(float(tensors[f"optim.{n}.step"][0])),
                    "exp_avg": tensors[f"optim.{n}.exp_avg"].clone(),
                    "exp_avg_sq": tensors[f"optim.{n}.exp_avg_sq"].clone(),
                }
    if generator is not None and "rng.torch" in tensors:
        generator.set_state(tensors["rng.torch"])
    return meta
