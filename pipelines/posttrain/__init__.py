"""Phase 3, fine-tuning: chat and preference data, SFT, reward-model training, DPO and their
losses, all on the one training loop (``finetune`` holds what they share).
"""
