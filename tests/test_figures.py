"""Figures read back from their PNG files, and the maps they draw checked against definitions.

The figures: the image panels hold exactly the nearest-neighbour upscale of the input, a heat
map's brightest (or reddest) cell is where the map's maximum is, and every panel asked for is
there at its size. The maps: VQA rollout relevance and per-head attention, the captioner's
cross-attention per word and the dual encoder's per-token shares of the similarity each sum
as their definitions say, computed on tiny untrained models against independent evaluations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mmjax.data.tokenizer import BOS, EOS
from mmjax.interpret.attention import vqa_attention
from mmjax.interpret.caption_attention import caption_attention
from mmjax.interpret.figures import (
    Example,
    HeatCell,
    caption_figure,
    heat_grid_figure,
    reconstruction_figure,
    retrieval_figure,
    vqa_figure,
)
from mmjax.interpret.figures.heat import cells_to_pixels, upscale
from mmjax.interpret.figures.reconstruction import words_differing
from mmjax.interpret.retrieval_relevance import retrieval_relevance
from mmjax.models import decoding
from mmjax.models.captioner import Captioner, captioner_decoder
from mmjax.models.dual_encoder import DualEncoder
from mmjax.models.vqa import VQATransformer


def _scene(seed=0, size=15):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _saved(canvas, path):
    canvas.save(path)
    with Image.open(path) as image:
        assert image.size == (canvas.width, canvas.height)
        return np.asarray(image.convert("RGB"))


def _inside(canvas):
    """Every panel lies within the figure."""
    for name, box in canvas.boxes.items():
        assert box.left >= 0 and box.top >= 0, name
        assert box.left + box.width <= canvas.width, name
        assert box.top + box.height <= canvas.height, name


def _luminance(pixels):
    return pixels.astype(np.float64) @ [0.299, 0.587, 0.114]


def _cell_means(pixels, grid, reduce):
    """The mean of `reduce(pixels)` over each cell of `grid` laid over the panel: [rows, cols]."""
    values = reduce(pixels)
    h, w = values.shape
    rows = np.arange(h) * grid[0] // h
    cols = np.arange(w) * grid[1] // w
    sums = np.zeros(grid)
    np.add.at(sums, (rows[:, None], cols[None, :]), values)
    counts = np.zeros(grid)
    np.add.at(counts, (rows[:, None], cols[None, :]), 1)
    return sums / counts


def test_cells_to_pixels_is_the_nearest_neighbour_upscale_of_the_grid():
    grid = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(cells_to_pixels(grid, (2, 3), (4, 6)), upscale(grid, 2))
    # 5 cells over 12 pixels: pixel x belongs to cell x * 5 // 12 (blocks of 2 or 3 pixels).
    row = cells_to_pixels(np.arange(5.0), (1, 5), (1, 12))[0]
    np.testing.assert_array_equal(row, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4])


class _Maps:
    """A VQAAttention-like object with a known relevance map (5 x 5 cells over 15 pixels)."""

    def __init__(self, relevance, heads):
        self.relevance = relevance[None, None]
        self.answer_to_image = [h[None, None] for h in heads]
        self.grid = (5, 5)


def test_vqa_figure_shows_the_upscaled_scene_and_the_map_maximum_brightest(tmp_path):
    image = _scene()
    relevance = np.random.default_rng(1).random(25) * 0.02
    relevance[17] = 0.05  # cell (3, 2)
    heads = [np.random.default_rng(i).dirichlet(np.ones(25), size=3) for i in range(2)]
    canvas = vqa_figure(image, _Maps(relevance, heads), "is it?", "yes", 0.93, per_head=True)
    pixels = _saved(canvas, tmp_path / "vqa.png")
    s = canvas.boxes["image"].height // 15
    assert s >= 4 and canvas.boxes["image"].width == 15 * s
    np.testing.assert_array_equal(canvas.boxes["image"].crop(pixels), upscale(image, s))
    heat = canvas.boxes["heatmap"].crop(pixels)
    brightness = _cell_means(heat, (5, 5), _luminance)
    assert np.unravel_index(np.argmax(brightness), (5, 5)) == (3, 2)
    # The heat map is drawn in blocks: every pixel of a cell has its cell's colour.
    assert (heat[3 * 3 * s : 4 * 3 * s, 2 * 3 * s : 3 * 3 * s] == heat[3 * 3 * s, 2 * 3 * s]).all()
    assert canvas.boxes["overlay"].height == 15 * s
    assert {f"layer{layer}_head{h}" for layer in range(2) for h in range(3)} <= set(canvas.boxes)
    assert "colorbar" in canvas.boxes and "head_colorbar" in canvas.boxes
    title = canvas.figure.texts[0].get_text()
    assert '"is it?"' in title and "answer: yes (p = 0.93)" in title
    without = vqa_figure(image, _Maps(relevance, heads), "is it?", "yes", 0.93)
    assert not any(name.startswith("layer") for name in without.boxes)
    assert without.height < canvas.height
    many = [np.random.default_rng(i).dirichlet(np.ones(25), size=12) for i in range(2)]
    wide = vqa_figure(image, _Maps(relevance, many), "is it?", "yes", 0.93, per_head=True)
    assert "layer1_head11" in wide.boxes and wide.width > canvas.width
    for figure in (canvas, without, wide):
        _inside(figure)


def test_caption_figure_has_a_panel_per_word_titled_with_it(tmp_path):
    image = _scene(2)
    words = ["a", "red", "square", "on", "the", "left", "and", "a", "blue", "circle"]
    maps = np.random.default_rng(3).dirichlet(np.ones(9), size=len(words))
    maps[4] = 0.0
    maps[4, 7] = 1.0  # "the" looks at cell (2, 1) only
    canvas = caption_figure(image, words, maps, (3, 3), columns=4)
    pixels = _saved(canvas, tmp_path / "caption.png")
    _inside(canvas)
    box = canvas.boxes["image"]
    np.testing.assert_array_equal(box.crop(pixels), upscale(image, box.height // 15))
    for i, word in enumerate(words):
        assert canvas.axes[f"word{i}"].get_title() == f"{i + 1}. {word}"
    assert canvas.boxes["word4"].top > canvas.boxes["word3"].top  # 4 words a row
    panel = canvas.boxes["word4"].crop(pixels)
    brightness = _cell_means(panel, (3, 3), _luminance)
    assert np.unravel_index(np.argmax(brightness), (3, 3)) == (2, 1)


def test_retrieval_figure_ranks_captions_and_marks_the_largest_share_reddest(tmp_path):
    image = _scene(4)
    shares = np.random.default_rng(5).normal(0, 0.01, (3, 9))
    shares[1, 5] = 0.2  # the second caption rests on cell (1, 2)
    similarity = np.array([0.1, 0.5, -0.2])
    canvas = retrieval_figure(image, ["one", "two", "three"], similarity, shares, (3, 3))
    pixels = _saved(canvas, tmp_path / "retrieval.png")
    _inside(canvas)
    order = sorted(["caption0", "caption1", "caption2"], key=lambda n: canvas.boxes[n].left)
    assert order == ["caption1", "caption0", "caption2"]  # most similar first
    assert canvas.axes["caption1"].get_title() == "#1: similarity +0.500"
    panel = canvas.boxes["caption1"].crop(pixels).astype(np.float64)
    redness = _cell_means(panel, (3, 3), lambda p: p[..., 0] - p[..., 2])
    assert np.unravel_index(np.argmax(redness), (3, 3)) == (1, 2)


def test_reconstruction_figure_puts_input_and_each_source_side_by_side(tmp_path):
    image, decoded = _scene(6), _scene(7)
    rows = [
        Example(
            image,
            "from left to right: red square",
            {
                "from_image": (decoded, "from left to right: red circle"),
                "from_text": (decoded, "from left to right: red square"),
                "joint": (image, "from left to right: red square"),
            },
        ),
        Example(decoded, None, {"from_image": (image, "a text")}),
    ]
    canvas = reconstruction_figure(rows)
    pixels = _saved(canvas, tmp_path / "reconstruction.png")
    _inside(canvas)
    s = canvas.boxes["input0"].height // 15
    np.testing.assert_array_equal(canvas.boxes["input0"].crop(pixels), upscale(image, s))
    np.testing.assert_array_equal(canvas.boxes["from_text0"].crop(pixels), upscale(decoded, s))
    lefts = [canvas.boxes[f"{k}0"].left for k in ("input", "from_image", "from_text", "joint")]
    assert lefts == sorted(lefts)
    assert canvas.axes["joint0"].get_title() == "from image + text (MSE 0.0000)"
    assert canvas.axes["from_text1"].get_title() == "from the text: no text given"
    texts = " ".join(t.get_text().replace("\n", " ") for t in canvas.figure.texts)
    assert "red circle (1 word wrong)" in texts and "red square (0 words wrong)" in texts
    assert words_differing("from left to right : a , b", "From left to right: a, b") == 0
    assert words_differing("a b c", "a x c d") == 2  # one word changed, one missing
    # Five shapes changed: five words, however a diff would align them.
    truth = "yellow circle, orange square, blue square, red square, gray square, green circle"
    decoded = "yellow square, orange circle, blue circle, red circle, gray circle, green circle"
    assert words_differing(decoded, truth) == 5
    assert words_differing("", "a b") == 2 and words_differing("a b", "") == 2


def test_heat_grid_draws_every_cell_on_one_scale(tmp_path):
    image = _scene(8)
    heat = np.zeros(9)
    heat[4] = 1.0
    cells = [
        [HeatCell(image, heat * (r + 1), (3, 3), f"r{r}c{c}", [(7, 7, "wo")]) for c in range(3)]
        for r in range(2)
    ]
    canvas = heat_grid_figure(cells, "weight", title="a grid", row_labels=["a", "b"])
    pixels = _saved(canvas, tmp_path / "grid.png")
    _inside(canvas)
    assert {f"cell{r}_{c}" for r in range(2) for c in range(3)} <= set(canvas.boxes)
    centre = [
        _cell_means(canvas.boxes[f"cell{r}_0"].crop(pixels), (3, 3), _luminance)[1, 1]
        for r in range(2)
    ]
    assert centre[1] > centre[0]  # one scale: the row with twice the value is brighter


# ---------------------------------------------------------------- the maps' definitions


def test_vqa_relevance_is_the_image_share_of_the_answers_rollout_row():
    kw = dict(width=8, depth=2, num_heads=2, mlp_dim=16, stem="patch", patch_size=5, vocab_size=12)
    model = VQATransformer(**kw, question_fusion="pooled", pool="mean")
    images = jnp.asarray(np.random.default_rng(2).integers(0, 255, (1, 15, 15, 3)), jnp.uint8)
    questions = jnp.array([[[2, 5, 6, 3], [2, 7, 3, 0]]])
    params = jax.jit(model.init)(jax.random.key(0), images, questions)["params"]
    maps = vqa_attention(model, params, images, questions)
    n = 9
    # The question's single token is the last row; its rollout row sums to one over all
    # tokens, of which the relevance is the image part.
    np.testing.assert_allclose(maps.relevance, maps.rollout[..., -1, :n], rtol=1e-12)
    assert (maps.relevance.sum(-1) < 1).all() and (maps.relevance > 0).all()
    for layer, heads in zip(maps.layers, maps.answer_to_image):
        np.testing.assert_allclose(heads, layer[..., -1, :n], rtol=1e-12)
        np.testing.assert_allclose(layer.sum(-1), 1.0, rtol=1e-5)  # image + question keys


def _captioner(**kw):
    return Captioner(
        vocab_size=12,
        max_len=8,
        width=16,
        encoder_depth=1,
        decoder_depth=2,
        num_heads=2,
        mlp_dim=32,
        stem="patch",
        patch_size=5,
        **kw,
    )


def test_caption_attention_per_word_sums_to_one_over_the_image_tokens():
    keep = 4  # of the 9 patches: the maps are placed back on the whole grid
    model = _captioner(keep_tokens=keep, token_selector="salient_patches")
    images = jnp.asarray(np.random.default_rng(3).integers(0, 255, (2, 15, 15, 3)), jnp.uint8)
    params = jax.jit(model.init)(jax.random.key(1), images, jnp.ones((2, 1, 8), jnp.int32))
    params = params["params"]
    encoded = model.apply({"params": params}, images, method=Captioner.encode)
    tokens, _ = decoding.greedy(
        captioner_decoder(model),
        params["decoder"],
        encoded,
        None,
        bos_id=BOS,
        eos_id=EOS,
        max_len=8,
    )
    maps = caption_attention(model, params, images, tokens)
    assert maps.grid == (3, 3) and maps.maps.shape == (2, 8, 9) and len(maps.layers) == 2
    # The teacher-forced pass is the greedy decoder's: its argmax (padding excluded, as the
    # decoder never writes it) gives the same words.
    logits = maps.logits.copy()
    logits[..., 0] = -np.inf
    for b in range(2):
        n = int(maps.lengths[b])
        np.testing.assert_array_equal(logits[b, :n].argmax(-1), np.asarray(tokens)[b, :n])
    np.testing.assert_allclose(maps.maps.sum(-1), 1.0, rtol=1e-5)
    for layer in maps.layers:
        np.testing.assert_allclose(layer.sum(-1), 1.0, rtol=1e-5)  # every head's row
    np.testing.assert_allclose(maps.maps, np.mean([x.mean(1) for x in maps.layers], 0))
    assert maps.cells.sum(-1).tolist() == [keep] * 2
    assert not maps.maps[~np.broadcast_to(maps.cells[:, None], maps.maps.shape)].any()


@pytest.mark.parametrize("pool", ["mean", "map"])
def test_retrieval_shares_sum_to_the_cosine_similarity(pool):
    model = DualEncoder(
        vocab_size=12,
        max_len=6,
        embed_dim=8,
        width=16,
        num_heads=2,
        mlp_dim=32,
        stem="conv",
        conv_channels=(8, 8),
        image_pool=pool,
    )
    images = jnp.asarray(np.random.default_rng(4).integers(0, 255, (2, 16, 16, 3)), jnp.uint8)
    texts = jnp.array([[[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0], [2, 8, 9, 10, 3, 0]]] * 2)
    params = jax.jit(model.init)(jax.random.key(2), images, texts)["params"]
    out, _ = model.apply({"params": params}, images, texts)
    expected = np.einsum("bte,be->bt", np.asarray(out["text"]), np.asarray(out["image"]))
    rel = retrieval_relevance(model, params, images, texts)
    assert rel.grid == (4, 4) and rel.maps.shape == (2, 3, 16)  # 16 -> 8 -> 4
    np.testing.assert_allclose(rel.similarity, expected, rtol=1e-5, atol=1e-6)
    if pool == "mean":
        assert rel.kind == "contribution"
        np.testing.assert_allclose(rel.maps.sum(-1), expected, rtol=1e-4, atol=1e-6)
    else:
        assert rel.kind == "token_similarity"
        assert np.abs(rel.maps).max() <= 1 + 1e-6
        assert not np.allclose(rel.maps.sum(-1), expected, atol=1e-3)
