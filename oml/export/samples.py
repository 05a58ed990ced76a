"""Built-in sample inputs for the export's parity and quantization checks (used when the caller gives none)."""

from typing import List

import numpy as np
from PIL import Image

SAMPLE_TEXTS: List[str] = [
    "A small dog is running across the wet grass.",
    "The puppy chased a ball through the park.",
    "Stock markets fell sharply after the announcement.",
    "Shares dropped on Monday as investors grew nervous.",
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
    "Heavy rain is expected in the north tomorrow.",
    "The forecast says storms will reach the coast by evening.",
    "She plays the violin in the city orchestra.",
    "The concert featured a string quartet and a pianist.",
    "Python library for parsing command line arguments",
    "Command-line option parser for shell scripts",
    "Bake the bread at two hundred degrees for forty minutes.",
    "Knead the dough, let it rise, then put it in a hot oven.",
    "The spacecraft entered orbit around Mars last night.",
    "A rover landed on the red planet to search for water.",
    "shared library for reading and writing PNG images",
    "image manipulation programs and codecs",
    "The committee approved the new budget for schools.",
    "Lawmakers voted to increase funding for education.",
    "My laptop battery drains too quickly.",
    "Why does my phone get hot while charging?",
    "The museum reopened with an exhibition of modern art.",
    "Paintings by contemporary artists are on display this month.",
    "He scored twice in the final minutes of the match.",
    "The team won the championship after a penalty shootout.",
    "Translation files for the desktop environment",
    "documentation and examples for the C compiler",
    "Drink plenty of water when exercising in the heat.",
    "Regular exercise improves sleep and mood.",
    "The train to the airport leaves every fifteen minutes.",
    "Buses run less often on Sundays and holidays.",
    "debug symbols for the network time daemon",
    "fonts with wide coverage of Unicode scripts",
    "Quantum computers use qubits instead of bits.",
    "Researchers built a faster algorithm for sorting large files.",
    "The hotel room had a view of the mountains.",
    "We booked a cabin near the lake for the weekend.",
    "x",
    "An unusually long sentence that keeps going with many clauses, commas and details, so that the tokenizer "
    "produces far more tokens than for the short ones above, which exercises padding and the attention mask.",
]


def sample_images(count: int = 8, size: int = 96, seed: int = 0) -> List[Image.Image]:
    """Deterministic synthetic RGB images (gradients, blocks and noise) of varied sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        height = size + 16 * (i % 3)
        width = size + 24 * ((i + 1) % 3)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack([xs / width, ys / height, (xs + ys) / (width + height)], axis=-1) * 255.0
        noise = rng.normal(0.0, 30.0, size=base.shape)
        block = np.zeros_like(base)
        top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        block[top:top + height // 3, left:left + width // 3] = rng.uniform(0, 255, size=3)
        array = np.clip(base * (i % 2) + noise + block, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(array, mode="RGB"))
    return images


__all__ = ["SAMPLE_TEXTS", "sample_images"]
