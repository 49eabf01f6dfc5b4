"""NEFTune (Jain et al., 2023): uniform noise on the word embeddings during training, as
transformers' Trainer adds it with `neftune_noise_alpha`: each training forward's embedding
output gets noise uniform in [−α/√(L·d), α/√(L·d)] (L the padded length, d the embedding width;
padding included, as there). Evaluation forwards are left alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option


@dataclass
class NEFTuneConfig:
    """Noise strength (default: 5, the value the NEFTune paper recommends first)."""

    TITLE: ClassVar[str] = "NEFTune"  # its --help heading

    neftune_alpha: float = field(
        default=5.0, metadata=option("α: noise scale before the 1/√(L·d) factor", low=0)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class NEFTune(Method[NEFTuneConfig]):
    """Noisy word embeddings in every training forward; no extra pass, no extra term."""

    name: ClassVar[str] = "neftune"
    summary: ClassVar[str] = "uniform noise on the word embeddings in training (~1x)"
    config_classes: ClassVar[tuple[type, ...]] = (NEFTuneConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
        self.generator = info.generator(next(model.parameters()).device, 6, per_process=True)
        embeddings.register_forward_hook(self._noise)

    def _noise(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.config.neftune_alpha == 0:
            return output
        assert self.generator is not None
        bound = self.config.neftune_alpha / math.sqrt(output.size(1) * output.size(2))
        draw = torch.rand(output.shape, generator=self.generator, device=output.device)
        return output + ((draw * 2 - 1) * bound).to(output.dtype)
