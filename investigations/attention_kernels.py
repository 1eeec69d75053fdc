"""What the conditional attention costs on the CPU kernels: ``python -m investigations.attention_kernels``.

Without dropout (evaluation, MT-Uncertainty scoring in evaluation mode), PyTorch's CPU SDPA runs its
fused flash kernel with a boolean padding mask (the vanilla layers) but falls back to the unfused math
kernel when the additive mask needs a gradient, as CA-MTL's learned bias M(z) does. With dropout (a
training step: BERT's attention dropout is 0.1) no fused CPU kernel applies, so every contender runs
the math kernel. This times forward + backward of one attention call per case at both speed shapes
(batch 32, 12 heads, 128 tokens, the last quarter padded) and names the kernel that ran.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import profile

HEAD_SIZES = {"6 x 384": 32, "12 x 768": 64}
DROPOUTS = {"no dropout": 0.0, "dropout 0.1": 0.1}


def attention_step(q, k, v, mask, dropout: float) -> None:
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout).sum().backward()


def kernel_of(q, k, v, mask, dropout: float) -> str:
    with profile() as trace:
        attention_step(q, k, v, mask, dropout)
    names = [e.key for e in trace.key_averages() if e.key.startswith("aten::_scaled_dot_product")]
    return names[0].removeprefix("aten::_scaled_dot_product_") if names else "?"


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch, heads, length = 32, 12, 128
    padding = torch.ones(batch, 1, length, length, dtype=torch.bool)
    padding[..., 3 * length // 4 :] = False  # (B, 1, L, L), True = attend
    bias = torch.zeros(batch, 1, length, length, requires_grad=True)  # M(z), learned
    cases = {
        "boolean padding mask (vanilla)": lambda: padding,
        "additive bias with gradient (CA-MTL)": lambda: bias.masked_fill(~padding, -1e9),
        "additive bias, no gradient": lambda: bias.detach().masked_fill(~padding, -1e9),
    }
    print(f"one attention call, forward + backward, batch {batch} x {heads} heads x {length} tokens")
    for shape, head_size in HEAD_SIZES.items():
        q, k, v = (torch.randn(batch, heads, length, head_size, requires_grad=True) for _ in range(3))
        for regime, dropout in DROPOUTS.items():
            times = {name: [] for name in cases}
            for _ in range(7):  # interleaved rounds; the first is a warm-up
                for name, mask in cases.items():
                    start = time.perf_counter()
                    attention_step(q, k, v, mask(), dropout)
                    times[name].append(time.perf_counter() - start)
            vanilla = statistics.median(times["boolean padding mask (vanilla)"][1:])
            for name, mask in cases.items():
                median = statistics.median(times[name][1:])
                kernel = kernel_of(q, k, v, mask(), dropout)
                print(
                    f"{shape:<9} {regime:<11} {name:<38} {1000 * median:7.1f} ms  "
                    f"{median / vanilla:5.2f}x  {kernel}"
                )


if __name__ == "__main__":
    main()
