"""PyTorch modelling code for babyjax's LTG-BERT-style models (model.style 'ltg_bert', babyjax/model/ltg.py), shipped in
every exported folder as `modeling_ltg_bert.py` and loaded with `trust_remote_code=True`:

    AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)   # attention both ways (mlm, mntp)
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)   # causal attention (hybrid runs)

Logits come back for every position, unshifted: for runs trained with mntp or hybrid the output at position i
predicts token i + 1 (the BabyLM 2025 pipeline's mntp backend reads position i - 1). Each sequence's relative positions
start at 0 at its first token; padding (attention_mask 0) is never attended to. Written for babyjax (not a copy of
ltgoslo's files); works with transformers 4.4x-4.5x and 5.x. Needs only torch and transformers.
"""

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

MAX_POSITION = 512


class LtgBertConfig(PretrainedConfig):
    model_type = "babyjax_ltg_bert"

    def __init__(
        self,
        vocab_size=16384,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=2048,
        position_bucket_size=32,
        layer_norm_eps=1e-5,
        max_position_embeddings=512,
        **kwargs,
    ):
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.position_bucket_size, self.layer_norm_eps = position_bucket_size, layer_norm_eps
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


def relative_buckets(length, buckets):
    """Bucket index (0 .. 2 buckets - 2) of every query-key pair of a sequence of `length` tokens."""
    mid = buckets // 2
    rel = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    dist = torch.where(rel.abs() < mid, torch.full_like(rel, mid - 1), rel.abs().clamp(max=MAX_POSITION - 1))
    log_pos = torch.ceil(torch.log(dist.float() / mid) / math.log((MAX_POSITION - 1) / mid) * (mid - 1)).long() + mid
    return torch.where(dist <= mid, rel, rel.sign() * log_pos) + buckets - 1


def _norm(x, eps, weight=None, bias=None):
    return nn.functional.layer_norm(x.float(), x.shape[-1:], weight, bias, eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.head_dim, self.eps = (
            c.num_attention_heads,
            c.hidden_size // c.num_attention_heads,
            c.layer_norm_eps,
        )
        self.in_proj_qk = nn.Linear(c.hidden_size, 2 * c.hidden_size)  # rows: q (head-major), then k
        self.in_proj_v = nn.Linear(c.hidden_size, c.hidden_size)
        self.out_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.post_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def split(self, x):  # [..., D] -> [..., H, K]
        return x.view(*x.shape[:-1], self.heads, self.head_dim)

    def forward(self, x, blocked, buckets, rel):
        b, t, d = x.shape
        q, k = self.in_proj_qk(_norm(x, self.eps)).chunk(2, dim=-1)
        v = self.in_proj_v(_norm(x, self.eps))
        q_pos, k_pos = self.in_proj_qk(rel).chunk(2, dim=-1)
        q, k, v, q_pos, k_pos = map(self.split, (q, k, v, q_pos, k_pos))
        scores = torch.einsum("blhk,bmhk->bhlm", q, k)
        c2p = torch.einsum("blhk,rhk->bhlr", q, k_pos)
        p2c = torch.einsum("bmhk,rhk->bhmr", k, q_pos)
        idx = buckets
        scores = scores + c2p.gather(-1, idx.expand(b, self.heads, t, t))
        scores = scores + p2c.gather(-1, idx.t().expand(b, self.heads, t, t)).transpose(-1, -2)
        scores = (scores / math.sqrt(3 * self.head_dim)).masked_fill(blocked, torch.finfo(scores.dtype).min)
        out = torch.einsum("bhlm,bmhk->blhk", scores.softmax(-1), v).reshape(b, t, d)
        return self.post_norm(self.out_proj(out))


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.eps = c.layer_norm_eps
        self.w_in = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)  # rows: value, then gate
        self.w_out = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        value, gate = self.w_in(_norm(x, self.eps)).chunk(2, dim=-1)
        return self.w_out(_norm(value * nn.functional.gelu(gate, approximate="tanh"), self.eps))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention, self.mlp = Attention(c), FeedForward(c)

    def forward(self, x, blocked, buckets, rel):
        x = x + self.attention(x, blocked, buckets, rel)
        return x + self.mlp(x)


class LtgBertPreTrainedModel(PreTrainedModel):
    config_class = LtgBertConfig
    base_model_prefix = "ltg_bert"

    def _init_weights(self, module):  # weights always come from a babyjax export
        pass


class LtgBertForMaskedLM(LtgBertPreTrainedModel):
    causal = False

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.word_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.relative_embedding = nn.Parameter(torch.zeros(2 * c.position_bucket_size - 1, c.hidden_size))
        self.relative_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.head_dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size)  # babyjax ties it to word_embedding: saved as a copy
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        b, t = input_ids.shape
        keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        blocked = ~keep[:, None, None, :]
        if self.causal:
            blocked = blocked | torch.ones(t, t, dtype=torch.bool, device=input_ids.device).triu(1)
        buckets = relative_buckets(t, self.config.position_bucket_size).to(input_ids.device)
        eps = self.config.layer_norm_eps
        x = _norm(self.word_embedding(input_ids), eps)
        rel = self.relative_norm(self.relative_embedding)
        for layer in self.layers:
            x = layer(x, blocked, buckets, rel)
        h = _norm(nn.functional.gelu(self.head_dense(_norm(x, eps))), eps)
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return (CausalLMOutput if self.causal else MaskedLMOutput)(loss=loss, logits=logits)


class LtgBertForCausalLM(LtgBertForMaskedLM):
    causal = True
