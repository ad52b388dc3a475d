"""A GPT-style decoder-only transformer (after nanoGPT's model.py); its per-sequence loss
is `sgdwalk.losses.sequence_cross_entropy`.

    logits = GPT(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)(ids)

Token and position embeddings, `n_layer` pre-LayerNorm blocks x + attn(ln(x)), x + mlp(ln(x))
with causal self-attention and a GELU MLP of width 4 n_embd, a final LayerNorm and an output
head tied to the token embedding: logits = ln_f(x) E^T with E the (vocab, n_embd) embedding.

Attention has two paths that compute the same function. The default calls PyTorch's fused
`F.scaled_dot_product_attention`; the "math" path writes out softmax(Q K^T / sqrt(d) + M) V
with M = -inf above the diagonal. Fused attention has no double backward and no forward-mode
derivative in PyTorch, so Hessian-vector products (and `torch.func.jvp`) must run inside
`with math_attention(model):`.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from sgdwalk.config import ModelConfig
from sgdwalk.errors import ConfigError
from sgdwalk.models.registry import register_model


def causal_attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: nn.Module
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + M) v with M_ij = -inf for j > i, written out.

    Args: q, k, v of shape (B, heads, T, d); `dropout` applied to the attention weights.
    Returns (B, heads, T, d). Every operation has a double backward and a jvp.
    """
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return dropout(weights) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused q, k, v projection.

    Attributes:
        math: False (default): fused scaled-dot-product attention; True: the written-out
            `causal_attention_math`, which second derivatives need (see `math_attention`).
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)  # a residual projection: scaled init
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head = n_head
        self.math = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); position t attends to positions <= t only."""
        b, t, c = x.shape
        q, k, v = (
            z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
            for z in self.c_attn(x).split(c, dim=2)
        )
        if self.math:
            y = causal_attention_math(q, k, v, self.attn_dropout)
        else:
            p = self.attn_dropout.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).reshape(b, t, c)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(OrderedDict(  # nanoGPT's parameter names
            c_fc=nn.Linear(n_embd, 4 * n_embd),
            gelu=nn.GELU(),
            c_proj=nn.Linear(4 * n_embd, n_embd),  # a residual projection: scaled init
            dropout=nn.Dropout(dropout),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer: int64 token ids (B, T) -> next-token logits (B, T, vocab).

    Args:
        vocab_size: number of distinct tokens (the dataset's num_classes).
        block_size: longest sequence T (number of learned positions).
        n_layer, n_head, n_embd: blocks, heads per block, residual width (n_head | n_embd).
        dropout: probability on embeddings, attention weights and residual branches.
        init: True: nanoGPT's initialisation (`init_gpt`); False: PyTorch's defaults.
    """

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int, dropout: float = 0.0, init: bool = True):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)  # also the output head (tied)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        if init:
            init_gpt(self, n_layer)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) of the token after each position, for ids (B, T), T <= block."""
        t = ids.shape[1]
        if t > self.block_size:
            raise ValueError(f"GPT: expected sequences of length <= {self.block_size}, got {t}")
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(t, device=ids.device)))
        for block in self.h:
            x = block(x)
        # the tied head as a product with the embedding itself: one parameter, no alias
        # that functional_call or a flat parameter vector would have to resolve
        return F.linear(self.ln_f(x), self.wte.weight)


@torch.no_grad()
def init_gpt(model: nn.Module, n_layer: int) -> None:
    """nanoGPT's (GPT-2's) initialisation, in place, from torch's global RNG.

    Linear and Embedding weights ~ N(0, 0.02^2), biases 0, LayerNorm 1 / 0; the residual
    projections (`*.c_proj.weight`) ~ N(0, (0.02 / sqrt(2 n_layer))^2), so the residual
    stream's variance does not grow with depth.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


@contextlib.contextmanager
def math_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every `CausalSelfAttention` in `model` takes the math path.

    Needed for second derivatives (double backward, `torch.func.jvp`), which fused attention
    lacks; a model without attention is unchanged. Each layer's previous setting is
    restored on exit, also after an exception.
    """
    layers = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    before = [m.math for m in layers]
    for m in layers:
        m.math = True
    try:
        yield model
    finally:
        for m, flag in zip(layers, before):
            m.math = flag


@register_model("gpt")
def build_gpt(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> GPT:
    """GPT over a vocabulary of `num_classes` tokens for sequences of shape (T,), T <= block.

    `model.init = "study"` draws nanoGPT's initialisation; "torch" keeps PyTorch's defaults.
    """
    if len(input_shape) != 1:
        raise ConfigError(f"model gpt: expected an input shape (sequence length,), "
                          f"got {input_shape}")
    if input_shape[0] > cfg.block_size:
        raise ConfigError(f"model.block_size: expected >= the data's sequence length "
                          f"{input_shape[0]}, got {cfg.block_size}")
    return GPT(num_classes, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout,
               init=cfg.init == "study")
