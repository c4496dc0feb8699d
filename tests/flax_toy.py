"""A small Flax linen language model written the way a researcher might write their own: the
module `tests/test_flax_model.py` trains through r1jax's SFT and GRPO via `r1jax.model.FlaxModel`."""

import flax.linen as nn
import jax.numpy as jnp


class ToyLM(nn.Module):
    """One pre-norm attention + MLP block over learned token and position embeddings."""

    vocab: int
    width: int = 32
    heads: int = 2
    max_len: int = 512

    @nn.compact
    def __call__(self, tokens, positions, mask, segment_ids):
        init = nn.initializers.normal(0.02)
        embed = nn.Embed(self.vocab, self.width, embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")))
        x = embed(tokens) + nn.Embed(self.max_len, self.width, embedding_init=init)(positions)
        T = tokens.shape[1]
        allowed = jnp.tril(jnp.ones((T, T), bool))[None] & mask[:, None, :]
        if segment_ids is not None:
            allowed &= segment_ids[:, :, None] == segment_ids[:, None, :]
        allowed |= jnp.eye(T, dtype=bool)[None]  # a padding query still has a finite softmax
        x = x + nn.MultiHeadDotProductAttention(self.heads, kernel_init=init)(nn.LayerNorm()(x), mask=allowed[:, None])
        x = x + nn.Dense(self.width, kernel_init=init)(nn.gelu(nn.Dense(4 * self.width, kernel_init=init)(
            nn.LayerNorm()(x))))
        return nn.Dense(self.vocab, kernel_init=init)(nn.LayerNorm()(x)).astype(jnp.float32)


def make(vocab: int, width: int = 32) -> ToyLM:
    return ToyLM(vocab=vocab, width=width)
