"""PyTorch modelling code for babyjax's LTG-BERT-style models (model.style 'ltg_bert', babyjax/model/ltg.py), shipped in
every exported folder as `modeling_ltg_bert.py` and loaded with `trust_remote_code=True`:

    AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)   # attention both ways (mlm, mntp)
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)   # causal attention (hybrid runs)
    AutoModel.from_pretrained(folder, trust_remote_code=True)              # the encoder alone (fine-tuning)

Logits come back for every position, unshifted: for runs trained with mntp or hybrid the output at position i
predicts token i + 1 (the BabyLM 2025 pipeline's mntp backend reads position i - 1). Each sequence's relative positions
start at 0 at its first token; padding (attention_mask 0) is never attended to. Written for babyjax (not a copy of
ltgoslo's files); works with transformers 4.4x-4.5x and 5.x. Needs only torch and transformers.
"""

import math

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput, MaskedLMOutput

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
    """The encoder every class shares, its parameters at the top level of the saved names (word_embedding,
    relative_embedding, relative_norm, layers), so that one safetensors file loads into each class."""

    config_class = LtgBertConfig
    base_model_prefix = "ltg_bert"
    causal = False

    def _init_weights(self, module):  # weights always come from a babyjax export
        pass

    def _add_encoder(self, c):
        self.word_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.relative_embedding = nn.Parameter(torch.zeros(2 * c.position_bucket_size - 1, c.hidden_size))
        self.relative_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])

    def _blocked(self, input_ids, attention_mask):
        """Which keys each query may not attend to, [B, 1, T, T] or broadcastable. attention_mask is [B, T] (padding)
        or [B, T, T] (query by key, as the BabyLM 2025 pipeline's fine-tuning builds it with --causal)."""
        t = input_ids.shape[1]
        if attention_mask is None:
            blocked = torch.zeros(input_ids.shape[0], 1, 1, t, dtype=torch.bool, device=input_ids.device)
        elif attention_mask.dim() == 3:
            blocked = ~attention_mask.bool()[:, None]
        else:
            blocked = ~attention_mask.bool()[:, None, None, :]
        if self.causal:
            blocked = blocked | torch.ones(t, t, dtype=torch.bool, device=input_ids.device).triu(1)
        return blocked

    def encode(self, input_ids, attention_mask=None, output_hidden_states=None):
        """The last layer's output [B, T, D] and, when asked (or the config says so), every layer's input and the last
        output (HF's hidden_states: the normalised embeddings first)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        blocked = self._blocked(input_ids, attention_mask)
        buckets = relative_buckets(input_ids.shape[1], self.config.position_bucket_size).to(input_ids.device)
        x = _norm(self.word_embedding(input_ids), self.config.layer_norm_eps)
        rel = self.relative_norm(self.relative_embedding)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, blocked, buckets, rel)
            hidden.append(x)
        return x, (tuple(hidden) if output_hidden_states else None)


class LtgBertModel(LtgBertPreTrainedModel):
    """The encoder without its head (AutoModel): last_hidden_state is the last layer's output and there are no
    logits, so a classifier that reads `.logits` before `.last_hidden_state` (the BabyLM 2025 pipeline's
    fine-tuning) gets the hidden states. Attention goes both ways unless a [B, T, T] attention_mask says otherwise."""

    _keys_to_ignore_on_load_unexpected = [r"^head_dense\.", r"^lm_head\."]  # the LM head, unused here

    def __init__(self, config):
        super().__init__(config)
        self._add_encoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.word_embedding

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=None, **kwargs):
        x, hidden = self.encode(input_ids, attention_mask, output_hidden_states)
        return BaseModelOutput(last_hidden_state=x, hidden_states=hidden)


class LtgBertForMaskedLM(LtgBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        c = config
        self._add_encoder(c)
        self.head_dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size)  # babyjax ties it to word_embedding: saved as a copy
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None, **kwargs):
        x, hidden = self.encode(input_ids, attention_mask, output_hidden_states)
        eps = self.config.layer_norm_eps
        logits = self.lm_head(_norm(nn.functional.gelu(self.head_dense(_norm(x, eps))), eps))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return (CausalLMOutput if self.causal else MaskedLMOutput)(loss=loss, logits=logits, hidden_states=hidden)


class LtgBertForCausalLM(LtgBertForMaskedLM):
    causal = True
