"""mmjax: a JAX/Flax research framework for multimodal models."""

from setuptools import find_packages, setup

setup(
    name="mmjax",
    version="0.1.0",
    description="JAX/Flax research framework for multimodal models",
    packages=find_packages(include=["mmjax", "mmjax.*"]),
    python_requires=">=3.11",
    # Ranges span the versions these were tested with (2026-11: jax 0.10.2, flax 0.12.8, ...).
    install_requires=[
        "jax>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.6,<0.3",
        "orbax-checkpoint>=0.12,<0.13",
        "ml-collections>=1.1,<2",
        "grain>=0.2.15,<0.3",
        "tensorflow-datasets>=4.9.9,<5",
        "array-record>=0.8,<0.9",
        "absl-py>=2.1,<3",
        "numpy>=2.0,<3",
        "tensorboardX>=2.6,<3",
        "tqdm>=4.66,<5",
        "sentencepiece>=0.2.0,<0.3",  # tested with 0.2.0 and 0.2.3
        "pillow>=10,<14",  # PNG/JPEG reading and writing; tested with 13.0
        # Curves (python -m mmjax.plot), sweep plots and the notebooks' figures; binary wheels
        # for Linux, macOS and Windows, no compiler needed; tested with 3.11.2.
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        # METEOR and the COCO evaluation's PTB tokenization: pycocoevalcap's jars (a 104 MB
        # wheel) and a Java runtime (tested with OpenJDK 17); without them both are skipped
        # with one warning. BLEU, ROUGE-L and CIDEr-D need no extra.
        "eval": ["pycocoevalcap>=1.2,<1.3"],
        # python -m experiments.benchmark: Hugging Face ViLT (PyTorch, CPU) as the comparison;
        # tested with torch 2.14.1 and transformers 5.24.0.
        "bench": ["torch>=2.14,<3", "transformers>=5.24,<6"],
        # Importing Hugging Face weights (mmjax.weights): safetensors reads save_pretrained
        # directories and tokenizers their tokenizer.json; torch and transformers build the
        # reference models of tests/test_weights_hf.py. Tested with torch 2.14.1, transformers
        # 5.25.0, safetensors 0.8.0, tokenizers 0.23.3. PyPI's torch wheel brings its CUDA
        # libraries: a fresh venv of these four took 6.5 minutes and 5.5 GB here.
        "convert": [
            "torch>=2.14,<3",
            "transformers>=5.24,<6",
            "safetensors>=0.8,<0.9",
            "tokenizers>=0.23,<0.24",
        ],
        "test": [
            "pytest>=8,<10",
            "ruff>=0.17,<0.18",
            "pycocoevalcap>=1.2,<1.3",
            # Executing notebooks/ (tests/test_notebooks.py); tested with nbclient 0.11.0,
            # nbformat 5.11.1, ipykernel 7.4.0.
            "nbclient>=0.11,<0.12",
            "nbformat>=5.11,<6",
            "ipykernel>=7,<8",
        ],
        # Kept so that older install commands work: matplotlib is now a core dependency.
        "plot": [],
    },
)
