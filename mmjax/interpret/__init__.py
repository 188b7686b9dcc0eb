"""Interpretability: attention weights of the fusion encoder, attention rollout, overlays."""
