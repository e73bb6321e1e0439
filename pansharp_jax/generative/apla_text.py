"""The CLIP text encoder of Stable Diffusion and its tokenizers.

:class:`CLIPTextEncoder` has the layout of transformers' ``CLIPTextModel`` (``text_model/
embeddings/{token_embedding, position_embedding}``, ``text_model/encoder/layers_<i>/
{layer_norm1, self_attn/{q,k,v,out}_proj, layer_norm2, mlp/{fc1, fc2}}``,
``text_model/final_layer_norm``): pre-LN layers with a causal mask, quick-GELU (or exact
GELU), and the last hidden state after ``final_layer_norm`` as the UNet's context
(B, L, hidden), as SD 1.x uses it.

Tokenizers (:func:`make_tokenizer`):

* :class:`BPETokenizer`: CLIP's byte-level BPE from a ``tokenizer/vocab.json`` and
  ``merges.txt`` (lower-case, whitespace collapsed, words split by a regex close to CLIP's,
  bytes mapped to printable unicode, ``</w>`` ending each word); ids are
  ``[bos] + tokens + [eos]`` padded with ``eos`` (SD 1.x's pad token) to ``max_length``.
* :class:`HashTokenizer` (the fallback when no vocabulary files exist; used by the tiny
  config): every lower-cased word (``[a-z0-9]+`` or one other non-space character) gets id
  ``2 + crc32(word) mod (vocab_size - 2)``; id 0 is bos, 1 is eos/pad. Deterministic across
  runs and machines; unrelated to CLIP's vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.generative.apla_unet import _tuple


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The fields of a transformers ``text_encoder/config.json`` used here (defaults: SD 1.5's CLIP ViT-L/14)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextConfig:
        """From a transformers config dict (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _tuple(v) for k, v in d.items() if k in names})


def _act(name: str, x: jax.Array) -> jax.Array:
    if name == "quick_gelu":
        return x * jax.nn.sigmoid(1.702 * x)
    if name in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        return jax.nn.gelu(x, approximate=name != "gelu")
    raise InputError(f"unsupported text-encoder activation {name!r}")


class _Embeddings(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        tok = nn.Embed(self.cfg.vocab_size, self.cfg.hidden_size, name="token_embedding")(ids)
        pos = nn.Embed(self.cfg.max_position_embeddings, self.cfg.hidden_size, name="position_embedding")(jnp.arange(ids.shape[1]))
        return tok + pos[None]


class _SelfAttn(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, l_, d = x.shape
        h = self.cfg.num_attention_heads
        sp = lambda a: a.reshape(b, l_, h, d // h)  # noqa: E731
        q, k, v = (sp(nn.Dense(d, name=f"{n}_proj")(x)) for n in "qkv")
        w = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // h)
        w = jnp.where(jnp.tril(jnp.ones((l_, l_), bool))[None, None], w, -1e9)
        o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(w, -1), v).reshape(b, l_, d)
        return nn.Dense(d, name="out_proj")(o)


class _Layer(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        x = x + _SelfAttn(c, name="self_attn")(nn.LayerNorm(epsilon=c.layer_norm_eps, name="layer_norm1")(x))
        x = x + _MLP(c, name="mlp")(nn.LayerNorm(epsilon=c.layer_norm_eps, name="layer_norm2")(x))
        return x


class _MLP(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _act(self.cfg.hidden_act, nn.Dense(self.cfg.intermediate_size, name="fc1")(x))
        return nn.Dense(self.cfg.hidden_size, name="fc2")(h)


class _Encoder(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.cfg.num_hidden_layers):
            x = _Layer(self.cfg, name=f"layers_{i}")(x)
        return x


class _TextModel(nn.Module):
    cfg: TextConfig

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        x = _Encoder(self.cfg, name="encoder")(_Embeddings(self.cfg, name="embeddings")(ids))
        return nn.LayerNorm(epsilon=self.cfg.layer_norm_eps, name="final_layer_norm")(x)


class CLIPTextEncoder(nn.Module):
    """Token ids (B, L) int32, L <= max_position_embeddings -> last hidden state (B, L, hidden) float32."""

    cfg: TextConfig

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        return _TextModel(self.cfg, name="text_model")(jnp.asarray(ids, jnp.int32))


# ----------------------------------------------------------------------------- tokenizers
_WORD = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class BPETokenizer:
    """CLIP's BPE from ``vocab`` (token -> id) and ``merges`` (ranked pairs); see the module docstring."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int = 77) -> None:
        self.vocab, self.max_length = vocab, int(max_length)
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_map = _bytes_to_unicode()
        try:
            self.bos, self.eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
        except KeyError as e:
            raise InputError(f"tokenizer vocabulary lacks the special token {e}") from None

    @classmethod
    def from_folder(cls, folder: str | Path, max_length: int = 77) -> BPETokenizer:
        """From ``vocab.json`` and ``merges.txt`` in ``folder`` (the first merges line is a header when it starts with '#')."""
        folder = Path(folder)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(ln.split()) for ln in lines if ln.strip() and not ln.startswith("#")]
        return cls(vocab, [m for m in merges if len(m) == 2], max_length)  # type: ignore[misc]

    def bpe(self, word: str) -> list[str]:
        """One pre-tokenized word (already byte-mapped) -> its BPE symbols (last one ends with ``</w>``)."""
        syms = list(word[:-1]) + [word[-1] + "</w>"]
        while len(syms) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            syms = syms[:i] + [syms[i] + syms[i + 1]] + syms[i + 2 :]
        return syms

    def encode(self, text: str) -> list[int]:
        """Text -> token ids without bos/eos (unknown symbols are dropped)."""
        text = " ".join(str(text).split()).lower()
        out: list[int] = []
        for w in _WORD.findall(text):
            mapped = "".join(self.byte_map[b] for b in w.encode("utf-8"))
            out += [self.vocab[s] for s in self.bpe(mapped) if s in self.vocab]
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Texts -> ids (B, max_length) int32: bos, tokens (truncated), eos, eos padding."""
        return _pack([self.encode(t) for t in texts], self.bos, self.eos, self.max_length)


class HashTokenizer:
    """The vocabulary-free fallback (module docstring): ids (B, max_length) int32 in [0, vocab_size)."""

    def __init__(self, vocab_size: int, max_length: int) -> None:
        if vocab_size < 3:
            raise InputError(f"vocab_size must be >= 3, got {vocab_size}")
        self.vocab_size, self.max_length, self.bos, self.eos = int(vocab_size), int(max_length), 0, 1

    def encode(self, text: str) -> list[int]:
        """Text -> word ids without bos/eos."""
        words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", str(text).lower())
        return [2 + zlib.crc32(w.encode("utf-8")) % (self.vocab_size - 2) for w in words]

    def __call__(self, texts: list[str]) -> np.ndarray:
        return _pack([self.encode(t) for t in texts], self.bos, self.eos, self.max_length)


def _pack(seqs: list[list[int]], bos: int, eos: int, length: int) -> np.ndarray:
    out = np.full((len(seqs), length), eos, np.int32)
    for i, s in enumerate(seqs):
        ids = [bos] + s[: length - 2] + [eos]
        out[i, : len(ids)] = ids
    return out


def make_tokenizer(cfg: TextConfig, folder: str | Path | None = None) -> BPETokenizer | HashTokenizer:
    """:class:`BPETokenizer` when ``folder`` holds ``vocab.json`` and ``merges.txt``, else :class:`HashTokenizer`."""
    if folder is not None and (Path(folder) / "vocab.json").is_file() and (Path(folder) / "merges.txt").is_file():
        return BPETokenizer.from_folder(folder, cfg.max_position_embeddings)
    return HashTokenizer(cfg.vocab_size, cfg.max_position_embeddings)


__all__ = ["TextConfig", "CLIPTextEncoder", "BPETokenizer", "HashTokenizer", "make_tokenizer"]
