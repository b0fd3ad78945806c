"""Phase 2, pre-training: the BPE tokenizer (``bpe``), documents → token shards (``tokenize``),
the shards' sampler (``token_shards``) and the Llama pre-training stage (``pretrain``).
"""
