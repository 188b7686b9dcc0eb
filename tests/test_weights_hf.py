"""Hugging Face CLIPModel and ViTModel imported into mmjax compute what PyTorch computes.

Small models with random weights are built from configs here (no download), saved with
`save_pretrained`, imported with `mmjax.weights`, and run in both frameworks on the same
images and texts: embeddings, logits and hidden states agree within 1e-5 in float32.
Needs the [convert] extra (torch, transformers); skipped without it.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.captioner import Captioner
from mmjax.models.dual_encoder import DualEncoder
from mmjax.weights import WeightsError, hf, tree

torch = pytest.importorskip("torch", reason='needs torch: pip install -e ".[convert]"')
transformers = pytest.importorskip(
    "transformers", reason='needs transformers: pip install -e ".[convert]"'
)

TOL = 1e-5
VOCAB, MAX_LEN, BOS, EOS = 99, 16, 97, 98


def _save_clip(path, eos_token_id=EOS):
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LEN,
            bos_token_id=BOS,
            eos_token_id=eos_token_id,
        ),
        # Another width, depth and head count than the text tower's, as real CLIPs have.
        vision_config=dict(
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=6,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=24,
        logit_scale_init_value=2.0,
    )
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(path)
    return model


def _texts(rng, lengths):
    """Token ids [N, MAX_LEN] of texts BOS w... EOS of the given lengths, and their masks.

    Padding is 0 (mmjax's) in the ids mmjax reads; PyTorch reads the same ids with an attention
    mask. Every word id is below the special ids, so the EOS is the largest id of each text.
    """
    ids = np.zeros((len(lengths), MAX_LEN), np.int64)
    mask = np.zeros_like(ids)
    for i, length in enumerate(lengths):
        ids[i, 0], ids[i, length - 1] = BOS, EOS
        ids[i, 1 : length - 1] = rng.integers(0, BOS, length - 2)
        mask[i, :length] = 1
    return ids, mask


def _mmjax_params(model, imported, images, tokens):
    params = jax.jit(model.init)(jax.random.key(1), images, tokens)["params"]
    assert set(imported.params) <= set(tree.flatten(params)), "imported a parameter mmjax lacks"
    return tree.replace(params, imported.params)


def _pixels(images, mean, std):
    """mmjax's float images [B, H, W, 3] in [0, 1] as CLIP's normalised NCHW pixel values."""
    x = (images - np.asarray(mean)) / np.asarray(std)
    return torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float32)


@pytest.mark.parametrize("eos_token_id", [EOS, 2], ids=["eos_id", "legacy_argmax"])
def test_clip_embeddings_and_logits_match_pytorch(tmp_path, eos_token_id):
    reference = _save_clip(tmp_path, eos_token_id)
    imported = hf.load(str(tmp_path))
    assert imported.unused == []  # every saved tensor has its place
    entries = imported.model_entries("dual_encoder")
    assert entries["eos_id"] == (-2 if eos_token_id == 2 else EOS)
    model = DualEncoder(vocab_size=VOCAB, max_len=MAX_LEN, **entries)

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 32, 32, 3)).astype(np.float32)
    ids, mask = _texts(rng, [3, 5, 11, MAX_LEN])
    params = _mmjax_params(model, imported, images, ids[:1])
    out, _ = jax.jit(model.apply)({"params": params}, images, jnp.asarray(ids))
    with torch.no_grad():
        ref = reference(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            pixel_values=_pixels(images, entries["image_mean"], entries["image_std"]),
        )
    np.testing.assert_allclose(out["image"], ref.image_embeds.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out["text"], ref.text_embeds.numpy(), atol=TOL, rtol=0)
    logits = out["logit_scale"] * np.asarray(out["image"]) @ np.asarray(out["text"]).T
    np.testing.assert_allclose(logits, ref.logits_per_image.numpy(), atol=TOL * 10, rtol=TOL)
    assert float(out["logit_scale"]) == pytest.approx(np.exp(2.0), rel=1e-6)


def test_clip_text_embedding_does_not_depend_on_padding_length(tmp_path):
    # The causal tower reads the EOS position: a text alone and padded to MAX_LEN agree.
    _save_clip(tmp_path)
    imported = hf.load(str(tmp_path))
    model = DualEncoder(vocab_size=VOCAB, max_len=MAX_LEN, **imported.model_entries())
    ids, _ = _texts(np.random.default_rng(1), [6])
    images = np.zeros((1, 32, 32, 3), np.float32)
    params = _mmjax_params(model, imported, images, ids)
    embed = jax.jit(lambda p, t: model.apply({"params": p}, t, method=DualEncoder.embed_texts))
    np.testing.assert_allclose(embed(params, ids[:, :6]), embed(params, ids), atol=1e-6)


def test_vit_hidden_states_match_pytorch(tmp_path):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    reference = transformers.ViTModel(config).eval()
    reference.save_pretrained(tmp_path)
    imported = hf.load(str(tmp_path))
    assert imported.unused == ["pooler.dense.bias", "pooler.dense.weight"]
    entries = imported.model_entries("captioner")
    assert entries["activation"] == "gelu_exact" and entries["layer_norm_eps"] == 1e-12
    model = Captioner(vocab_size=10, decoder_depth=1, **entries)

    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    params = _mmjax_params(model, imported, images, np.ones((3, 1, 4), np.int32))
    tokens = jax.jit(lambda p, x: model.apply({"params": p}, x, method=Captioner.encode))(
        params, images
    )
    with torch.no_grad():
        ref = reference(pixel_values=_pixels(images, 0.5, 0.5)).last_hidden_state.numpy()
    assert tokens.shape == ref.shape == (3, 17, 32)  # the class token and 16 patches
    np.testing.assert_allclose(tokens, ref, atol=TOL, rtol=0)


def test_pickled_weights_and_unknown_models_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(WeightsError, match="pickle"):
        hf.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(WeightsError, match="model_type 'bert' has no importer"):
        hf.load(str(tmp_path))
