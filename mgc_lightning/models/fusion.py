"""Mid-level fusion of spectrogram tokens with mask tokens (paper, section 3.1 and table 2).

One interface: forward(spectrogram_tokens (B, N, D), mask_tokens (B, M, D)) -> (B, D). Both token sets carry their
time-frequency position (`encoders.with_positions`), and every fusion uses it before anything is pooled: the band of a
click is what tells a beluga click from a porpoise click. The classifier adds the result to the pooled spectrogram
features (the residual path to the head), so a noisy mask can be ignored.
"""

from __future__ import annotations

import torch
from torch import nn


class EventPooling(nn.Module):
    """A per-token MLP reads each token together with its position, then the maximum over tokens: position is used
    before pooling forgets it, and a click that fills one token in 64 is not averaged away as a mean would."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.per_token = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                       nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.per_token(tokens).amax(dim=1)


class ConcatFusion(nn.Module):
    """Pool both branches (position-aware), concatenate, project back to D."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.pool_spectrogram, self.pool_mask = EventPooling(dim, dropout), EventPooling(dim, dropout)
        self.mix = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, spectrogram: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([self.pool_spectrogram(spectrogram), self.pool_mask(mask)], dim=-1))


class GatedFusion(nn.Module):
    """Gated residual: a sigmoid gate computed from both branches decides how much mask information passes."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.pool_spectrogram, self.pool_mask = EventPooling(dim, dropout), EventPooling(dim, dropout)
        self.gate = nn.Linear(2 * dim, dim)
        self.value = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, spectrogram: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled_spectrogram, pooled_mask = self.pool_spectrogram(spectrogram), self.pool_mask(mask)
        gate = torch.sigmoid(self.gate(torch.cat([pooled_spectrogram, pooled_mask], dim=-1)))
        return gate * self.value(pooled_mask)


class CrossAttentionFusion(nn.Module):
    """Spectrogram tokens query the mask tokens (keys and values), so attention weighs time-frequency regions by
    what the mask says about them and where they are; then a feed-forward block and pooling."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.norm_query, self.norm_memory = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                          nn.Linear(2 * dim, dim))

    def forward(self, spectrogram: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        memory = self.norm_memory(mask)
        attended, _ = self.attention(self.norm_query(spectrogram), memory, memory, need_weights=False)
        attended = attended + self.feed_forward(attended)
        return attended.mean(dim=1)


FUSIONS = {"concat": ConcatFusion, "gated": GatedFusion, "xattn": CrossAttentionFusion}
