"""A distilled conversion chain on disk: the sensitivity order, one checkpoint per chain step, and loading it.

A chain folder (under `settings().artefact_dir("dsla")`) holds `manifest.json` (the teacher,
the order with its entropies, the settings, and per finished step: the layer, its step
counts, times and losses) and `layer_<l>.safetensors` per converted layer (its DSLA
parameters: q, o, gates, mixture; k and v are the teacher's). Step j of the chain is
every layer file of the first j steps: layers are trained in order with the earlier ones
frozen, so every prefix is a consistent model. `partial.pt` holds a step in progress
(resume).

`tether dsla order` adds `measured_order` to the manifest: the converted layers by their measured
cost (`sensitivity.conversion_costs`), the order serving converts them in (`serving_order`). A
prefix of it is a subset of the chain's layers, each trained with the chain's earlier layers
converted; the benchmark scores those subsets as they are.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tether.cloud.dsla.layer import DSLAttention, kind_name
from tether.cloud.dsla.sensitivity import leading_order, measured_order
from tether.cloud.lm.model import Transformer

__all__ = ["Chain", "ChainError", "ChainStep", "attach"]

MANIFEST = "manifest.json"


class ChainError(ValueError):
    """A chain folder is missing, malformed or belongs to another teacher; the message says which file."""


@dataclass
class ChainStep:
    """One finished step of the chain: layer `layer` converted with every earlier step frozen."""

    layer: int
    local_steps: int
    e2e_steps: int
    seconds: float
    local_loss: list = field(default_factory=list)  # [step, normalised layer-output MSE], sampled
    e2e_loss: list = field(default_factory=list)  # [step, CE + alpha KL + beta MSE], sampled
    val_ppl: float | None = None  # held-out perplexity of the chain up to this step
    finished_at: str = ""


def attach(model: Transformer, n_states: int = 2, chunk: int = 16) -> list[DSLAttention]:
    """Give every layer of `model` a DSLA kind ("dsla", or "gla" for one state) at its initialisation;
    returns them by layer. Both weight sets stay resident; nothing changes what sequences use."""
    name = kind_name(n_states)
    out = []
    for slot in model.slots:
        if name not in slot.impls:
            slot.add_kind(
                name, DSLAttention(model.config, slot.impl("softmax"), n_states=n_states, chunk=chunk)
            )
        out.append(slot.impl(name))
    return out


class Chain:
    """A chain folder: create it (`create`), open it (`open`), add steps, load a prefix into a model."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        teacher: str,
        n_layer: int,
        n_states: int,
        order: list[int],
        entropy: list[float],
        settings: dict[str, Any],
    ) -> Chain:
        if sorted(order) != list(range(n_layer)):
            raise ChainError(f"the order must be a permutation of 0..{n_layer - 1}, but got {order}")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "teacher": teacher,
            "n_layer": n_layer,
            "n_states": n_states,
            "kind": kind_name(n_states),
            "order": order,
            "entropy": entropy,
            "settings": settings,
            "steps": [],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        chain = cls(folder, manifest)
        chain._write()
        return chain

    @classmethod
    def open(cls, folder: Path) -> Chain:
        path = folder / MANIFEST
        if not path.is_file():
            raise ChainError(f"{path} does not exist; run `tether dsla distill` to make a chain there")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ChainError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); delete the folder and distil again"
            ) from None
        for key in ("teacher", "n_layer", "n_states", "order", "steps"):
            if key not in manifest:
                raise ChainError(f"{path}: the manifest lacks {key!r}; delete the folder and distil again")
        return cls(folder, manifest)

    @classmethod
    def exists(cls, folder: Path) -> bool:
        return (folder / MANIFEST).is_file()

    # --- reading ---------------------------------------------------------------------------------

    @property
    def order(self) -> list[int]:
        return list(self.manifest["order"])

    @property
    def kind(self) -> str:
        return kind_name(self.manifest["n_states"])

    @property
    def steps(self) -> list[ChainStep]:
        return [ChainStep(**s) for s in self.manifest["steps"]]

    @property
    def serving_order(self) -> list[int]:
        """The converted layers in the order serving converts them: by measured cost where
        `tether dsla order` measured them, then any converted since, in chain order."""
        measured = self.manifest.get("measured_order", {}).get("order", [])
        done = self.converted
        first = [layer for layer in measured if layer in done]
        return first + [layer for layer in done if layer not in first]

    @property
    def full_order(self) -> list[int]:
        """Every layer: the serving order, then the layers not yet converted in chain order."""
        first = self.serving_order
        return first + [layer for layer in self.order if layer not in first]

    @property
    def num_converted(self) -> int:
        return len(self.manifest["steps"])

    @property
    def converted(self) -> list[int]:
        """Layers converted so far, in chain order."""
        return [s["layer"] for s in self.manifest["steps"]]

    def check_teacher(self, name: str) -> None:
        if self.manifest["teacher"] != name:
            raise ChainError(
                f"{self.folder / MANIFEST}: the chain was distilled from {self.manifest['teacher']!r}, "
                f"but the model is {name!r}; distil a chain for this model"
            )

    # --- writing ---------------------------------------------------------------------------------

    def _write(self) -> None:
        tmp = self.folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1) + "\n")
        tmp.replace(self.folder / MANIFEST)  # atomic: a crash never leaves half a manifest

    def add_step(self, layer: int, module: DSLAttention, step: ChainStep) -> None:
        """Record a finished step: the layer's parameters, then the manifest (so a listed step has its file)."""
        expected = self.order[self.num_converted]
        if layer != expected:
            raise ChainError(
                f"step {self.num_converted} of the chain must convert layer {expected}, not {layer}"
            )
        # Stored in the chain's save_dtype (float32 unless the settings say otherwise: bfloat16 halves a
        # chain that has to travel); loading casts back to the module's float32.
        dtype = getattr(torch, self.manifest.get("settings", {}).get("save_dtype", "float32"))
        tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(self.folder / f"layer_{layer}.safetensors"))
        step.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.manifest["steps"].append(asdict(step))
        self._write()
        (self.folder / "partial.pt").unlink(missing_ok=True)

    def reorder(self, first: list[int]) -> bool:
        """Convert `first` next, then the rest by the chain's entropies: the layers not yet converted
        change their order; those converted must be where `first` puts them (it begins with them, or
        is a prefix of them). Returns whether the order changed. A partial step of a layer that is no
        longer next stays on disk until the next partial step replaces it, and is not resumed."""
        done = self.converted
        k = min(len(first), len(done))
        if list(first[:k]) != done[:k]:
            raise ChainError(
                f"the order {list(first)} disagrees with the layers {self.folder} has converted, {done}: "
                "converted layers keep their places; give an order that begins with them, or start the "
                "chain again (--fresh)"
            )
        if len(first) <= len(done):
            return False
        try:
            new = leading_order(first, list(self.manifest["entropy"]))
        except ValueError as e:
            raise ChainError(f"the order {list(first)}: {e}") from None
        if new == self.order:
            return False
        self.manifest["order"] = new
        self._write()
        return True

    def set_measured_order(self, costs: dict[int, float], how: dict[str, Any]) -> list[int]:
        """Record each converted layer's measured cost and the serving order they give; returns it.
        `how` says how they were measured (metric, windows, tokens); kept beside them."""
        unknown = sorted(set(costs) - set(self.converted))
        if unknown:
            raise ChainError(
                f"layers {unknown} are not converted in {self.folder}; measure converted layers only"
            )
        order = measured_order(costs)
        self.manifest["measured_order"] = {
            "order": order,
            "cost": {str(layer): costs[layer] for layer in order},
            **how,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._write()
        return order

    def clear_measured_order(self) -> None:
        """Serve in chain order again."""
        if self.manifest.pop("measured_order", None) is not None:
            self._write()

    def save_partial(self, state: dict[str, Any]) -> None:
        tmp = self.folder / "partial.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.folder / "partial.pt")

    def load_partial(self) -> dict[str, Any] | None:
        path = self.folder / "partial.pt"
        if not path.is_file():
            return None
        state = torch.load(path, weights_only=False, map_location="cpu")  # the optimiser moves it back
        return state if state.get("layer") == self.order[self.num_converted] else None

    # --- loading into a model ------------------------------------------------------------------

    def load_into(self, model: Transformer, upto: int | None = None, *, activate: bool = True) -> list[int]:
        """Attach this chain's kind to every layer and load the trained parameters of the first `upto`
        layers of the serving order (all converted ones by default). With `activate`, those layers
        become the active kind (dense forward and new sequences use them). Returns them in serving
        order (chain order unless `tether dsla order` measured one)."""
        n = self.num_converted if upto is None else upto
        if not 0 <= n <= self.num_converted:
            raise ChainError(
                f"upto must satisfy 0 <= upto <= {self.num_converted} (finished steps), but got {n}"
            )
        if model.config.n_layer != self.manifest["n_layer"]:
            raise ChainError(
                f"{self.folder / MANIFEST}: the chain has {self.manifest['n_layer']} layers, "
                f"the model {model.config.n_layer}"
            )
        impls = attach(model, self.manifest["n_states"], self.manifest.get("settings", {}).get("chunk", 16))
        layers = self.serving_order[:n]
        for layer in layers:
            path = self.folder / f"layer_{layer}.safetensors"
            if not path.is_file():
                raise ChainError(f"{path} is missing but the manifest lists layer {layer}; distil again")
            impls[layer].load_state_dict(load_file(str(path)))
            if activate:
                model.slots[layer].active = self.kind
        return layers
