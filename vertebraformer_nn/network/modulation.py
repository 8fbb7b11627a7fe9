"""The dynamic modulation unit: an image-derived domain code and FiLM modulation driven by it.

How it works (paper.md 3.2 leaves the unit unspecified; this is DESIGN.md section 5's reading):

1. **Code.** ``z = code_net([mean_n(t), log std_n(t)])``: the per-channel mean and log standard deviation
   of the *tokenizer output* ``t`` (B, N, C) over the N tokens of each sample (before the positional
   embedding is added), passed through a two-layer MLP. These first-order statistics of a linear patch
   projection describe the image's "style" (intensity level, contrast, noise and sharpness seen
   through the patch filters), which is what differs between scanners and sites. The code is computed
   per sample and per input patch from the image alone: no domain id, no batch statistics, so it
   exists for an unseen scanner at test time and a sample's code does not depend on the rest of its
   batch.
2. **Domain classifier.** ``domain_logits = domain_classifier(z)`` (a linear layer to ``num_domains``).
   The trainer applies a cross-entropy between these logits and the known training domain of each
   case (the domain-code loss), which ties the code to the training domains. At test time the logits
   are informative only (a soft "which training domain does this look like").
3. **FiLM.** At each modulation site (after selected encoder blocks, on the token channels; after every
   shared decoder stage, on the feature channels) ``h' = (1 + dgamma(z)) * h + beta(z)``, where
   ``[dgamma, beta] = Linear(z)`` with the linear layer initialised to zero. Hence gamma = 1 and beta = 0
   exactly at initialisation: the modulated network computes bit-for-bit what the unmodulated one does,
   and training moves away from identity only as far as the losses ask. The zero-initialised
   generators still receive gradients (``d loss / d W = grad_gamma_or_beta * z``), and the code network is
   trained from the first step by the domain-code loss.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn


class FiLMGenerator(nn.Module):
    """Maps a code (B, code_dim) to a per-channel scale and shift; identity (1, 0) at initialisation."""

    def __init__(self, code_dim: int, num_channels: int):
        super().__init__()
        self.num_channels = num_channels
        self.proj = nn.Linear(code_dim, 2 * num_channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, code: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        d_gamma, beta = self.proj(code).chunk(2, dim=-1)
        return 1.0 + d_gamma, beta


class DynamicModulationUnit(nn.Module):
    """Code network, domain classifier and the FiLM generators of every modulation site.

    Args:
        embed_dim: token channels (the encoder's width).
        code_dim: size of the domain code z.
        num_domains: number of training domains seen by the auxiliary classifier (the plans' domains, 4 for
            MultiSpine); 0 for a dataset without domains (the classifier then has no outputs and no loss).
        num_encoder_sites: how many encoder blocks are followed by a modulation (FiLM on tokens).
        decoder_channels: channel count of each modulated decoder stage (FiLM on feature maps).
    """

    def __init__(
        self,
        embed_dim: int,
        code_dim: int,
        num_domains: int,
        num_encoder_sites: int,
        decoder_channels: Sequence[int],
    ):
        super().__init__()
        hidden = max(2 * code_dim, 32)
        self.code_net = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.GELU(), nn.Linear(hidden, code_dim))
        # no domains, no classifier (an empty Linear would hold zero-element weights)
        self.domain_classifier = nn.Linear(code_dim, num_domains) if num_domains > 0 else None
        self.encoder_film = nn.ModuleList([FiLMGenerator(code_dim, embed_dim) for _ in range(num_encoder_sites)])
        self.decoder_film = nn.ModuleList([FiLMGenerator(code_dim, c) for c in decoder_channels])

    @staticmethod
    def token_statistics(tokens: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        """(B, N, C) tokens -> (B, 2C): per-sample, per-channel mean and log standard deviation, in float32."""
        t = tokens.float()
        mean = t.mean(dim=1)
        var = t.var(dim=1, unbiased=False)
        return torch.cat([mean, 0.5 * torch.log(var + eps)], dim=1)

    def compute_code(self, tokens: torch.Tensor) -> torch.Tensor:
        """The domain code z (B, code_dim) of each sample, from its tokenizer output (B, N, C)."""
        stats = self.token_statistics(tokens)
        # autocast would otherwise run the MLP in half precision on the float32 statistics; keep it float32.
        with torch.autocast(device_type=stats.device.type, enabled=False):
            return self.code_net(stats)

    def domain_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.domain_classifier(code)

    def modulate_tokens(self, site: int, tokens: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """FiLM of (B, N, C) tokens at encoder site ``site``."""
        gamma, beta = self.encoder_film[site](code)
        return tokens * gamma[:, None, :].to(tokens.dtype) + beta[:, None, :].to(tokens.dtype)

    def modulate_features(self, site: int, features: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """FiLM of (B, C, *spatial) feature maps at decoder site ``site``."""
        gamma, beta = self.decoder_film[site](code)
        shape = gamma.shape + (1,) * (features.ndim - 2)
        return features * gamma.reshape(shape).to(features.dtype) + beta.reshape(shape).to(features.dtype)

    def film_parameters(self):
        """Parameters of the FiLM generators only (what a test perturbs to leave the identity)."""
        for module in (*self.encoder_film, *self.decoder_film):
            yield from module.parameters()

