"""A small GPT-NeoX (Pythia's architecture) trained with transformers on the BabyLM sample, saved as Pythia publishes
its checkpoints: one `step<N>` folder per revision (`save_pretrained`, safetensors, with its tokenizer), and a
`revisions.csv` giving each revision's tokens and words seen. The other family of docs/imported.md's worked example:

    python docs/examples/neox_series.py --out hf/neox_64 --hidden_size 64    # about 2 minutes on 2 CPU cores

Nothing here is babyjax: the series is what a PyTorch user would have, and babyjax reads it with --run NAME=hf:PATH.
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import numpy as np

SAVE_AT = (0, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 400)
EOT = "<|endoftext|>"


def _lines(sample: pathlib.Path) -> list[str]:
    return [ln.strip() for f in sorted((sample / "babylm_10M").glob("*.train")) for ln in f.open() if ln.strip()]


def _tokenizer(lines: list[str], vocab_size: int):
    """A byte-level BPE as Pythia's (its `<|endoftext|>` as bos, eos and unk), trained on the lines."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT, unk_token=EOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--sample", type=pathlib.Path, default=pathlib.Path("../shared/data/babylm_sample"))
    p.add_argument("--vocab_size", type=int, default=2000)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden_size", type=int, default=64, help="the model's width (its MLP: 4x)")
    p.add_argument("--num_layers", type=int, default=2)
    args = p.parse_args()

    import torch
    import transformers as T

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    lines = _lines(args.sample)
    tok = _tokenizer(lines, args.vocab_size)
    ids = np.concatenate([np.array(e.ids + [tok.eos_token_id]) for e in tok.backend_tokenizer.encode_batch(lines)])
    words_per_token = sum(len(ln.split()) for ln in lines) / len(ids)
    rows = ids[: len(ids) // args.seq_len * args.seq_len].reshape(-1, args.seq_len)
    config = T.GPTNeoXConfig(
        vocab_size=args.vocab_size + 16,  # padding rows beyond the tokenizer, as Pythia's 50304 for 50277
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=4,
        intermediate_size=4 * args.hidden_size,
        max_position_embeddings=args.seq_len,
        rotary_pct=0.25,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = T.GPTNeoXForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng, table = np.random.default_rng(args.seed), []
    for step in range(max(SAVE_AT) + 1):
        if step in SAVE_AT:
            model.save_pretrained(args.out / f"step{step}")
            tok.save_pretrained(args.out / f"step{step}")
            tokens = step * args.batch_size * args.seq_len
            table.append({"revision": f"step{step}", "step": step, "tokens_seen": tokens,
                          "words_seen": round(tokens * words_per_token)})  # fmt: skip
            print(f"saved step {step}", flush=True)
        if step == max(SAVE_AT):
            break
        batch = torch.from_numpy(rows[rng.integers(0, len(rows), args.batch_size)]).long()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    with (args.out / "revisions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["revision", "step", "tokens_seen", "words_seen"])
        w.writeheader()
        w.writerows(table)
    print(f"{len(table)} revisions in {args.out}; last loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
