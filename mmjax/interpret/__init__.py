"""Interpretability: what each task's prediction rests on, as arrays and as figures.

attention (VQA fusion attention per layer and head, rollout relevance), rollout, caption_attention
(a captioner's cross-attention per word), retrieval_relevance (each image token's share of a
caption's similarity), grid (token cells on the image), overlay, and figures/ (the pictures).
"""
