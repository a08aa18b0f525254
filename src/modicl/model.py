"""The GPT-style decoder of He et al. 2024 (PAPER.md §2.1–2.2), with named hook points.

Pre-LayerNorm blocks x ← x + Attn(LN₁ x); x ← x + MLP(LN₂ x); a final LayerNorm; no positional
embedding but rotary position embedding (RoPE, Su et al. 2021) on queries and keys, rotating adjacent
pairs of each head's dimensions with base θ = 10 000, as the ``rotary_embedding_torch`` defaults the
authors used; causal attention; bias-free linears; a ReLU MLP of width mlp_ratio·d_model; the token
embedding tied to the unembedding. The vocabulary is the p number tokens. Init follows the official
code: every weight ~ N(0, 0.02²), the MLP output projection further divided by √(2·n_layers).

Hook points are named as in TransformerLens (``blocks.0.attn.hook_pattern`` …); pass
``hooks={name: fn}`` to :meth:`Transformer.forward` to read or replace an activation, or call
:meth:`Transformer.run_with_cache`. With hooks, attention is computed explicitly (so the pattern
exists); without, through ``scaled_dot_product_attention`` or the explicit path (``attention``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .config import ModelConfig, RunConfig
from .family import example_width, input_length, query_slice, sequence_length

Hook = Callable[[Tensor], "Tensor | None"]
Hooks = Mapping[str, Hook]


def hook_names(n_layers: int) -> list[str]:
    """Every hook point of a model with ``n_layers`` blocks, in forward order. Shapes (B batch, T positions,
    H heads, D head dim, d d_model): hook_embed, resid_*, attn_out, mlp_out, ln_final [B, T, d];
    attn.hook_q/k/v/z [B, H, T, D] (q and k after RoPE); attn.hook_pattern [B, H, T, T];
    attn.hook_result [B, T, H, d] (each head's output after W_O); hook_mlp_post [B, T, mlp_ratio·d]."""
    names = ["hook_embed"]
    for i in range(n_layers):
        b = f"blocks.{i}"
        names += [f"{b}.hook_resid_pre"]
        names += [f"{b}.attn.hook_{s}" for s in ("q", "k", "v", "pattern", "z", "result")]
        names += [
            f"{b}.hook_attn_out",
            f"{b}.hook_resid_mid",
            f"{b}.hook_mlp_post",
            f"{b}.hook_mlp_out",
            f"{b}.hook_resid_post",
        ]
    return names + ["ln_final.hook_normalized"]


def _hook(hooks: Hooks | None, name: str, x: Tensor) -> Tensor:
    if hooks is not None and name in hooks:
        out = hooks[name](x)
        if out is not None:
            return out
    return x


def rope_tables(
    n_pos: int, head_dim: int, theta: float = 10_000.0
) -> tuple[Float[Tensor, "n_pos half"], Float[Tensor, "n_pos half"]]:
    """cos and sin tables, fp32 [n_pos, head_dim/2]: angle(t, i) = t · θ^(−2i/head_dim)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def _rotate(
    x: Float[Tensor, "*batch t d"], cos: Float[Tensor, "t_max half"], sin: Float[Tensor, "t_max half"]
) -> Float[Tensor, "*batch t d"]:
    # Each pair (x[2i], x[2i+1]) is a complex number multiplied by e^{iθ}: one vectorised complex
    # multiply in fp32 (measured 3–5× faster than the same rotation written with real muls, which
    # needs strided halves and a stack). The fp32 copy is made contiguous so the output is too.
    T = x.shape[-2]
    out = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    torch.view_as_complex(out.unflatten(-1, (-1, 2))).mul_(torch.complex(cos[:T], sin[:T]))
    return out.to(x.dtype)


class _Rope(torch.autograd.Function):
    """RoPE as one autograd node: the backward of a rotation is the rotation by the opposite angle,
    so nothing but the tables is saved and the backward costs one forward (instead of the six
    elementwise backward kernels autograd would record). Written in the torch.func style
    (``setup_context``, generated vmap rule) so ensembles can ``vmap`` the model."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        return _rotate(x, cos, sin)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, cos, sin = inputs
        ctx.save_for_backward(cos, sin)

    @staticmethod
    def backward(ctx, grad: Tensor):
        cos, sin = ctx.saved_tensors
        return _Rope.apply(grad, cos, -sin), None, None


def rotate_real(
    x: Float[Tensor, "*batch t d"], cos: Float[Tensor, "t_max half"], sin: Float[Tensor, "t_max half"]
) -> Float[Tensor, "*batch t d"]:
    """The RoPE rotation in real arithmetic: pairs (x[2i], x[2i+1]) → (x0·cos − x1·sin, x0·sin + x1·cos),
    in fp32. The same products and sums as the complex multiply of :func:`_rotate` (bit-identical results,
    ``tests/test_model.py``), but only real elementwise ops, so Inductor fuses it into one kernel and vmap
    needs no custom rule. In eager mode on a CPU it is ≈ 5× slower than the complex multiply (BENCHMARKS.md).

    Args:
        x: [..., T, D] queries or keys, any float dtype (the result has the same dtype).
        cos, sin: fp32 [≥T, D/2] from :func:`rope_tables`.
    """
    T = x.shape[-2]
    c, s = cos[:T], sin[:T]
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).to(x.dtype)


def apply_rope(
    x: Float[Tensor, "*batch t d"], cos: Float[Tensor, "t_max half"], sin: Float[Tensor, "t_max half"]
) -> Float[Tensor, "*batch t d"]:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of the last dim by the position's angle, in fp32.

    Eager: one autograd node around a complex multiply (fastest on CPUs, saves nothing for backward).
    Under ``torch.compile``: :func:`rotate_real`, which Inductor fuses (it cannot generate code for complex
    ops and would fall back to eager kernels). Both give the same bits.

    Args:
        x: [..., T, D] queries or keys (any float dtype; the result has the same dtype).
        cos, sin: fp32 [≥T, D/2] from :func:`rope_tables`.
    """
    if torch.compiler.is_compiling():
        return rotate_real(x, cos, sin)
    return _Rope.apply(x, cos, sin)


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE; fused bias-free qkv and output projections."""

    def __init__(self, cfg: ModelConfig, name: str):
        super().__init__()
        self.n_heads, self.name, self.impl = cfg.n_heads, name, cfg.attention
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.o = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        rope: tuple[Tensor, Tensor, Tensor],
        hooks: Hooks | None = None,
        queries: slice | None = None,
    ) -> Float[Tensor, "batch out d_model"]:
        """x [B, T, d_model] → attention output [B, T, d_model]; rope = (cos, sin, causal mask) tables.
        With ``queries`` (a slice of the T positions; no hooks) only those positions attend: output
        [B, len(range(T)[queries]), d_model], keys and values still at every position."""
        if queries is not None:
            return self._attend_at(x, rope, queries)
        cos, sin, causal = rope
        B, T, d = x.shape
        H = self.n_heads
        # Split along the projection's own layout [B, T, 3, H, D], then permute each part: the backward
        # concatenates the parts' gradients straight into that layout, which the weight-gradient matmul
        # reads as it is. (Indexing a permuted [3, B, H, T, D] view instead zero-fills a full-size gradient
        # per index, adds them, and copies the sum back to [B, T, 3·d].)
        qk, v = self.qkv(x).view(B, T, 3, H, d // H).split((2, 1), dim=2)
        q, k = apply_rope(qk.permute(2, 0, 3, 1, 4), cos, sin).unbind(0)  # queries and keys in one pass
        v = v.squeeze(2).transpose(1, 2)
        n = self.name
        if hooks is not None:
            q, k, v = (_hook(hooks, f"{n}.hook_{s}", t) for s, t in (("q", q), ("k", k), ("v", v)))
        if hooks is not None or self._explicit(x):
            # The causal mask enters as an additive 0/−inf bias fused into the score matmul.
            scores = torch.baddbmm(
                causal[:T, :T], q.flatten(0, 1), k.flatten(0, 1).transpose(-1, -2), alpha=q.shape[-1] ** -0.5
            )
            pattern = scores.view(B, H, T, T).softmax(dim=-1)
            pattern = _hook(hooks, f"{n}.hook_pattern", pattern)
            z = pattern.to(v.dtype) @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        z = _hook(hooks, f"{n}.hook_z", z)
        if hooks is not None and f"{n}.hook_result" in hooks:
            w_o = self.o.weight.view(d, H, d // H)  # [d_out, H, D]
            result = torch.einsum("bhtk,ehk->bthe", z, w_o.to(z.dtype))
            result = _hook(hooks, f"{n}.hook_result", result)
            return result.sum(dim=2)
        return self.o(z.transpose(1, 2).reshape(B, T, d))

    def _explicit(self, x: Tensor) -> bool:
        return uses_explicit_attention(self.impl, x.device.type)

    def _attend_at(self, x: Tensor, rope: tuple[Tensor, Tensor, Tensor], queries: slice) -> Tensor:
        # The same attention as forward's at the positions `queries`: the query rows of the fused weight
        # project only those positions, RoPE rotates them by their own angles, and the causal mask's rows
        # at those positions keep each query to the keys at or before it.
        cos, sin, causal = rope
        B, T, d = x.shape
        H, D = self.n_heads, d // self.n_heads
        w_q, w_kv = self.qkv.weight.split((d, 2 * d))
        k, v = (t.transpose(1, 2) for t in F.linear(x, w_kv).view(B, T, 2, H, D).unbind(2))  # as in forward
        xq = x[:, queries]
        Tq = xq.shape[1]
        q = apply_rope(F.linear(xq, w_q).view(B, Tq, H, D).transpose(1, 2), cos[:T][queries], sin[:T][queries])
        k = apply_rope(k, cos, sin)
        mask = causal[:T][queries, :T]  # additive 0 / −inf, [Tq, T]
        if self._explicit(x):
            scores = torch.baddbmm(mask, q.flatten(0, 1), k.flatten(0, 1).transpose(-1, -2), alpha=D**-0.5)
            z = scores.view(B, H, Tq, T).softmax(dim=-1).to(v.dtype) @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return self.o(z.transpose(1, 2).reshape(B, Tq, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN₁ x), then + MLP(LN₂ x) with a ReLU MLP."""

    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.name = f"blocks.{index}"
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, f"{self.name}.attn")
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        rope: tuple[Tensor, Tensor, Tensor],
        hooks: Hooks | None = None,
        positions: slice | None = None,
    ) -> Float[Tensor, "batch out d_model"]:
        """Residual stream [B, T, d_model] in and out. With ``positions`` (a slice of the T positions; no
        hooks) the block's output only there, [B, len(range(T)[positions]), d_model]: attention reads
        every position, the MLP runs on the kept ones."""
        if positions is not None:
            x_out = x[:, positions] + self.attn(self.ln1(x), rope, queries=positions)
            return x_out + self.proj(F.relu(self.fc(self.ln2(x_out)), inplace=True))
        n = self.name
        x = _hook(hooks, f"{n}.hook_resid_pre", x)
        x = x + _hook(hooks, f"{n}.hook_attn_out", self.attn(self.ln1(x), rope, hooks))
        x = _hook(hooks, f"{n}.hook_resid_mid", x)
        h = _hook(
            hooks, f"{n}.hook_mlp_post", F.relu(self.fc(self.ln2(x)), inplace=True)
        )  # in place: one 4·d buffer fewer
        x = x + _hook(hooks, f"{n}.hook_mlp_out", self.proj(h))
        return _hook(hooks, f"{n}.hook_resid_post", x)


class Transformer(nn.Module):
    """The decoder. Input int64 tokens [B, T] with values in [0, p) and T ≤ max_len; output logits
    [B, T, p] (float, the autocast dtype under autocast).

    Args:
        cfg: the model config.
        vocab_size: number of tokens (p).
        max_len: longest sequence the RoPE tables cover ((n_var + 1)·n_ctx for the task, see :func:`build_model`).
        role_period: tokens per example (n_var + 1, :mod:`modicl.family`): the period of the role
            embedding (``cfg.role_embedding``), whose row for position t is t mod role_period.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, max_len: int, role_period: int = 3):
        super().__init__()
        self.cfg, self.vocab_size, self.max_len, self.role_period = cfg, vocab_size, max_len, role_period
        self.wte = nn.Embedding(vocab_size, cfg.d_model)
        # Registered only when on, so the default model's parameters (and its init stream) are unchanged.
        self.wre = nn.Embedding(role_period, cfg.d_model) if cfg.role_embedding else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        cos, sin = rope_tables(max_len, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        causal = torch.ones(max_len, max_len, dtype=torch.bool).tril()
        self.register_buffer(
            "causal", torch.zeros(max_len, max_len).masked_fill(~causal, float("-inf")), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init (PAPER.md §2.2): N(0, σ²) everywhere (σ = ``init_std``, 0.02 in the paper), MLP
        out-projection / √(2·n_layers);
        the scaling keeps the residual stream's variance from growing with depth (GPT-2)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, mean=0.0, std=self.cfg.init_std)
                if name.endswith("proj.weight"):
                    with torch.no_grad():
                        p.div_(math.sqrt(2 * self.cfg.n_layers))
            elif name.endswith("weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def forward(
        self, tokens: Int[Tensor, "batch seq"], hooks: Hooks | None = None, positions: slice | None = None
    ) -> Float[Tensor, "batch out vocab"]:
        """int64 tokens [B, T] → logits [B, T, vocab]; ``hooks`` maps hook-point names to functions that may
        return a replacement activation. Raises ValueError when T exceeds max_len.

        ``positions`` (a slice of the T positions, e.g. :func:`modicl.family.query_slice`) returns the
        logits there only, [B, len(range(T)[positions]), vocab]: the same function as slicing the full
        logits, but the last block's queries, attention output and MLP, the final LayerNorm and the
        unembedding run only at those positions (a third of them for the z-token loss), since nothing
        downstream reads the others. With hooks every position is computed and the logits are sliced.
        """
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds the model's max_len {self.max_len}")
        x = self.wte(tokens)
        if self.wre is not None:
            x = x + self.wre.weight[torch.arange(tokens.shape[1], device=tokens.device) % self.role_period]
        x = _hook(hooks, "hook_embed", x)
        tables = (self.rope_cos, self.rope_sin, self.causal)
        if positions is not None and hooks is None:
            for block in self.blocks[:-1]:
                x = block(x, tables)
            x = self.blocks[-1](x, tables, positions=positions)
            return F.linear(self.ln_f(x), self.wte.weight)
        for block in self.blocks:
            x = block(x, tables, hooks)
        x = _hook(hooks, "ln_final.hook_normalized", self.ln_f(x))
        logits = F.linear(x, self.wte.weight)
        return logits if positions is None else logits[:, positions]

    def run_with_cache(
        self, tokens: Int[Tensor, "batch seq"], names: Iterable[str] | None = None
    ) -> tuple[Float[Tensor, "batch seq vocab"], dict[str, Tensor]]:
        """Forward pass that records activations.

        Args:
            tokens: int64 [B, T].
            names: hook points to record (default: all of :func:`hook_names`); unknown names raise KeyError.
        Returns:
            (logits [B, T, vocab], {name: detached activation}).
        """
        valid = hook_names(self.cfg.n_layers)
        names = list(valid if names is None else names)
        unknown = set(names) - set(valid)
        if unknown:
            raise KeyError(f"unknown hook points {sorted(unknown)}; see modicl.model.hook_names()")
        cache: dict[str, Tensor] = {}

        def recorder(name: str) -> Hook:
            def record(t: Tensor) -> None:
                cache[name] = t.detach()

            return record

        logits = self.forward(tokens, hooks={n: recorder(n) for n in names})
        return logits, cache


def build_model(cfg: RunConfig) -> Transformer:
    """The decoder of a run: vocabulary p, RoPE tables over a full sequence of the run's task family,
    role period n_var + 1 (:mod:`modicl.family`). Initialised from torch's global generator."""
    t = cfg.task
    return Transformer(cfg.model, t.p, sequence_length(t.n_ctx, t.n_var), example_width(t.n_var))


def n_params(model: nn.Module) -> int:
    """Number of parameters, the tied embedding counted once."""
    return sum(p.numel() for p in model.parameters())


def uses_explicit_attention(impl: str, device_type: str) -> bool:
    """Whether attention ``impl`` (``ModelConfig.attention``) runs the explicit softmax, which keeps the
    [B, H, T, T] pattern, on a ``device_type`` (``cpu``, ``cuda``) device: under ``manual``, and under
    ``auto`` on CPUs; SDPA otherwise. (Hooks always take the explicit path: the pattern must exist.)"""
    return impl == "manual" or (impl == "auto" and device_type == "cpu")


def count_params(cfg: RunConfig) -> int:
    """Number of parameters of :func:`build_model`'s model for ``cfg``, without building it (equal to
    :func:`n_params` of the built model): per block the qkv, output and MLP matrices and two LayerNorms,
    the tied p × d_model embedding, the role embedding (n_var + 1 rows) when on, the final LayerNorm."""
    d, L, r, V = cfg.model.d_model, cfg.model.n_layers, cfg.model.mlp_ratio, cfg.task.p
    roles = example_width(cfg.task.n_var) * d if cfg.model.role_embedding else 0
    return L * ((4 + 2 * r) * d * d + 4 * d) + V * d + roles + 2 * d


def train_flops_per_step(cfg: RunConfig) -> float:
    """Model FLOPs of one training step (forward + backward) of ``cfg``'s model, counted from its matmuls.

    Forward ×3 for forward + backward (the usual approximation, Kaplan et al. 2020): per token and layer
    2·(4 + 2·mlp_ratio)·d² for the qkv, output and MLP projections, and per sequence and layer
    4·d·T(T+1)/2 for the causal QKᵀ and attention-times-V products; the last layer projects keys and
    values at all T positions and the rest (queries, their attention, output projection, MLP) and the tied
    unembedding (2·d·p) only at the n_ctx query positions, as :meth:`Transformer.forward` runs it when
    training. Units: FLOP per optimizer step of ``cfg.train.batch_size`` sequences.
    """
    d, L, V, r = cfg.model.d_model, cfg.model.n_layers, cfg.task.p, cfg.model.mlp_ratio
    B, T = cfg.train.batch_size, input_length(cfg.task.n_ctx, cfg.task.n_var)
    queries = range(T)[query_slice(cfg.task.n_var)]  # position t attends to t + 1 keys
    layer = 2 * (3 * d * d + d * d) + 2 * 2 * r * d * d  # qkv, output and MLP projections, per token
    at_query = layer - 2 * 2 * d * d + 2 * d * V  # the last layer without keys and values; the unembedding
    per_sequence = (L - 1) * (T * layer + 4 * d * T * (T + 1) / 2)
    per_sequence += T * 2 * 2 * d * d + len(queries) * at_query + 4 * d * sum(t + 1 for t in queries)
    return 3.0 * B * per_sequence
