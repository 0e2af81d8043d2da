"""Other ecosystems: Hugging Face export (export.py writes the folders; hf_config.py, hf_params.py and
hf_tokenizer.py make what goes into them; hf_ltg_bert.py is the PyTorch code shipped with LTG-BERT exports)."""
