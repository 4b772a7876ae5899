"""Gated linear attention with per-channel data-dependent gates in three forms (GLA; Yang et al. 2024).

One state per head, S(t) = diag(g(t)) S(t-1) + k(t) v(t)^T (d_k x d_v), read out as
o(t) = q(t)^T S(t). DSLA (arXiv 2506.09316) runs two of these per head; the caller stacks
the states along the head axis, so every function here sees plain heads.

- `naive`: the recurrence token by token: the reference the other two are tested against.
- `step`: one token per sequence against a state (decoding: constant time and memory).
- `chunked`: the chunkwise-parallel form (prefill, training): within a chunk of C tokens the
  attention is a masked (C x C) product, across chunks the state is carried; from a state
  in, to the state out, so a long prompt goes through in pieces.
- `fold`: the state alone (no queries): what a KV cache folds into.

Gates are given as log g <= 0, shape like k. Shapes: q, k (B, T, H, d_k); v (B, T, H, d_v);
state (B, H, d_k, d_v). Across chunks every decay factor is exp of a non-positive number
(from a chunk's end back, or from a token back to its chunk's start); within a chunk the
decay exp(b_t - b_s) is factorised about the chunk's midpoint in float64, which the gate
floor (log g >= -50) keeps finite for chunks of up to 16 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["chunked", "fold", "gate_log", "naive", "step"]

# Tokens per span of `chunked`: bounds the memory of one call.
_SPAN = 1024
# Longest chunk whose intra-chunk factorisation stays finite in float64 at the gate floor -50.
MAX_CHUNK = 16
# Chunks per group of the training scan (`_scan_grouped`).
_GROUP = 16


def gate_log(z: torch.Tensor, temperature: float = 16.0, floor: float = -50.0) -> torch.Tensor:
    """log g = max(log sigmoid(z) / temperature, floor): GLA's gate (DSLA's temperature 16)."""
    return (F.logsigmoid(z) / temperature).clamp(min=floor)


def naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_g: torch.Tensor, state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence, one token at a time. Returns (o (B, T, H, d_v), final state (B, H, d_k, d_v))."""
    B, T, H, dk = k.shape
    S = k.new_zeros(B, H, dk, v.shape[-1]) if state is None else state
    out = []
    for t in range(T):
        S = log_g[:, t].exp()[..., None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(out, dim=1), S


def step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_g: torch.Tensor, state: torch.Tensor
) -> torch.Tensor:
    """One token for each of n sequences: q, k, log_g (n, H, d_k), v (n, H, d_v), state (n, H, d_k, d_v).

    Updates `state` in place (decoding runs under inference mode) and returns o (n, H, d_v)."""
    state.mul_(log_g.exp().unsqueeze(-1)).add_(k.unsqueeze(-1) * v.unsqueeze(-2))
    return torch.matmul(q.unsqueeze(-2), state).squeeze(-2)


def _pad(x: torch.Tensor, T: int) -> torch.Tensor:
    """Zero-pad the time axis (1) of (B, T0, H, d) to T. Padding after the end is inert:
    log g = 0 keeps the state, k = v = 0 adds nothing, q = 0 reads nothing."""
    return x if x.shape[1] == T else F.pad(x, (0, 0, 0, 0, 0, T - x.shape[1]))


def _chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, N*C, H, d) -> (B, H, N, C, d)."""
    B, T, H, d = x.shape
    return x.view(B, T // C, C, H, d).permute(0, 3, 1, 2, 4)


def _intra(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Within-chunk attention. q, k, b (B, H, N, C, d_k), v (B, H, N, C, d_v); b = cumulative log g.

    A[t, s] = sum_c q[t, c] k[s, c] exp(b[t, c] - b[s, c]) for s <= t, 0 above the diagonal,
    factorised about the midpoint m of each chunk's log-decay range: q exp(b - m) and k exp(m - b)
    in float64. With log g >= `floor` per token, |b - m| <= C |floor| / 2 = 400 for C = 16 and
    floor = -50, inside float64's range (exp(709)); entries above the diagonal may overflow and
    are masked out, and their gradient is zero."""
    C = q.shape[-2]
    b = b.double()
    m = 0.5 * b[..., -1:, :]  # (B, H, N, 1, d_k): b runs from ~0 down to b[-1]
    qf = q.double() * (b - m).exp()
    kf = k.double() * (m - b).exp()
    A = torch.matmul(qf, kf.transpose(-1, -2))  # (B, H, N, C, C)
    upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu_(1)
    A = A.masked_fill(upper, 0.0).to(v.dtype)
    return torch.matmul(A, v)


def _span(q, k, v, log_g, S, C: int):
    """`chunked` over one span (T a multiple of C). Returns (o (B, T, H, d_v), state)."""
    B, T, H, _ = k.shape
    qc, kc, vc, gc = (_chunks(t, C) for t in (q, k, v, log_g))
    b = gc.cumsum(dim=-2)  # (B, H, N, C, d_k): log decay from the chunk's start to each token
    o = _intra(qc, kc, vc, b)
    last = b[..., -1:, :]  # (B, H, N, 1, d_k): log decay over the whole chunk
    # What each chunk adds to the state, decayed to the chunk's end: (B, H, N, d_k, d_v).
    add = torch.matmul((kc * (last - b).exp()).transpose(-1, -2), vc)
    whole = last.squeeze(-2).exp().unsqueeze(-1)  # (B, H, N, d_k, 1)
    before, S = _scan(whole, add, S)
    q_decayed = qc * b.exp()  # reads the state as it was at the chunk's start
    o = o + torch.matmul(q_decayed, before)  # (B, H, N, C, d_v)
    return o.permute(0, 2, 3, 1, 4).reshape(B, T, H, -1), S


def _needs_grad(*ts: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _scan(decay: torch.Tensor, add: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The carried state across chunks, S <- decay_n * S + add_n: decay (B, H, N, d_k, 1), add
    (B, H, N, d_k, d_v), S (B, H, d_k, d_v) -> (the state at each chunk's start (B, H, N, d_k, d_v),
    the state after the last chunk)."""
    N = add.shape[2]
    if _needs_grad(decay, add, S):
        return _scan_grouped(decay, add, S)
    # Inference: every state written in place into one chunk-major buffer: one allocation for the
    # span instead of one per chunk (fresh pages are what a long prefill paid for on the CPU).
    buf = add.new_empty(N + 1, *S.shape)
    buf[0] = S
    adds, decays = add.movedim(2, 0), decay.movedim(2, 0)
    for n in range(N):
        torch.addcmul(adds[n], decays[n], buf[n], out=buf[n + 1])
    return buf[:N].movedim(0, 2), buf[N]


def _scan_grouped(
    decay: torch.Tensor, add: torch.Tensor, S: torch.Tensor, group: int = _GROUP
) -> tuple[torch.Tensor, torch.Tensor]:
    """`_scan` for training: groups of `group` chunks in parallel, a loop over groups only.

    Within a group (chunks n, m counted from the group's start, l_n = log decay of chunk n, c_n =
    l_0 + ... + l_n), the state at chunk n's start is exp(c_{n-1}) S_in + sum_{m<n} exp(c_{n-1} - c_m)
    add_m: a (group x group) masked product per key channel; only the state entering each group is
    carried sequentially. A long window (8K tokens: 512 chunks of 16) then costs 32 sequential steps
    in the backward pass instead of 512, and every exponent is a within-group sum (never large)."""
    B, H, N, dk, dv = add.shape
    G = max(1, min(group, N))
    Np = -(-N // G) * G
    log_d = decay.squeeze(-1).clamp_min(torch.finfo(decay.dtype).tiny).log()  # (B, H, N, dk)
    if Np != N:  # inert chunks: no decay, nothing added
        log_d = F.pad(log_d, (0, 0, 0, Np - N))
        add = F.pad(add, (0, 0, 0, 0, 0, Np - N))
    NS = Np // G
    c = log_d.view(B, H, NS, G, dk).cumsum(dim=3)  # (B, H, NS, G, dk)
    c_prev = F.pad(c[:, :, :, :-1], (0, 0, 1, 0))  # c_{n-1}, 0 at the group's start
    # W[n, m] = exp(c_{n-1} - c_m) for m < n (exponent <= 0), else 0: (B, H, NS, G(n), G(m), dk).
    lower = torch.ones(G, G, dtype=torch.bool, device=add.device).tril_(-1)[..., None]
    expo = (c_prev[:, :, :, :, None] - c[:, :, :, None]).masked_fill(~lower, -torch.inf)
    W = expo.exp()
    a = add.view(B, H, NS, G, dk, dv)
    local = torch.einsum("bhsnmk,bhsmkv->bhsnkv", W, a)  # each chunk's start state from its group alone
    # What a group adds to the state by its end: sum_m exp(c_last - c_m) add_m.
    tail = torch.einsum("bhsmk,bhsmkv->bhskv", (c[:, :, :, -1:] - c).exp(), a)
    whole = c[:, :, :, -1].exp().unsqueeze(-1)  # (B, H, NS, dk, 1): decay over the whole group
    starts = []
    for d, t in zip(whole.unbind(2), tail.unbind(2), strict=True):
        starts.append(S)
        S = torch.addcmul(t, d, S)
    S_in = torch.stack(starts, dim=2)  # (B, H, NS, dk, dv): the state entering each group
    before = local + c_prev.exp().unsqueeze(-1) * S_in.unsqueeze(3)
    return before.reshape(B, H, Np, dk, dv)[:, :, :N], S


def chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_g: torch.Tensor,
    state: torch.Tensor | None = None,
    chunk: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunkwise-parallel form. Returns (o (B, T, H, d_v), final state (B, H, d_k, d_v)).

    `chunk` <= MAX_CHUNK keeps the intra-chunk factorisation inside float64's range."""
    if not 1 <= chunk <= MAX_CHUNK:
        raise ValueError(
            f"chunk must satisfy 1 <= chunk <= {MAX_CHUNK} (float64 range at the gate floor -50), "
            f"but got chunk={chunk}"
        )
    B, T, H, dk = k.shape
    S = k.new_zeros(B, H, dk, v.shape[-1]) if state is None else state
    span = max(_SPAN // chunk, 1) * chunk
    outs = []
    for t0 in range(0, T, span):
        n = min(span, T - t0)
        Tp = -(-n // chunk) * chunk
        parts = [_pad(x[:, t0 : t0 + n], Tp) for x in (q, k, v, log_g)]
        o, S = _span(*parts, S, chunk)
        outs.append(o[:, :n])
    return torch.cat(outs, dim=1), S


def fold(
    k: torch.Tensor, v: torch.Tensor, log_g: torch.Tensor, state: torch.Tensor | None = None, chunk: int = 64
) -> torch.Tensor:
    """The state after tokens k, v with gates log_g (no read-out): S(T) = sum_s exp(b_T - b_s) k_s v_s^T.

    Chunkwise: O(T d_k d_v) work, O(T/C) sequential steps."""
    B, T, H, dk = k.shape
    S = k.new_zeros(B, H, dk, v.shape[-1]) if state is None else state
    Tp = -(-T // chunk) * chunk
    kc, vc, gc = (_chunks(_pad(x, Tp), chunk) for x in (k, v, log_g))
    b = gc.cumsum(dim=-2)
    last = b[..., -1:, :]
    add = torch.matmul((kc * (last - b).exp()).transpose(-1, -2), vc)  # (B, H, N, d_k, d_v)
    return _scan(last.squeeze(-2).exp().unsqueeze(-1), add, S)[1]
