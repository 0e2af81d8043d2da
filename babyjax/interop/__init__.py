"""Other ecosystems: Hugging Face export (export.py, with hf_ltg_bert.py's PyTorch code)."""
