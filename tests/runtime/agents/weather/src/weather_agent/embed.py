"""A deterministic embedding for the store's semantic-search tests: every word counts toward the
concept it belongs to (a small thesaurus), so two texts are near when they are about the same
thing, whatever their words. No model, no network."""

from __future__ import annotations

import math
import re

CONCEPTS = (
    {"cat", "cats", "kitten", "kittens", "feline", "dog", "puppy", "pet", "pets", "purrs"},
    {"rain", "raining", "umbrella", "storm", "forecast", "drizzle", "wet", "weather"},
    {"pizza", "pasta", "dinner", "lunch", "recipe", "hungry", "eat", "food"},
    {"flight", "train", "trip", "airport", "holiday", "travel", "journey"},
)
DIMS = len(CONCEPTS) + 1


def embed(texts: list[str]) -> list[list[float]]:
    vectors = []
    for text in texts:
        words = re.findall(r"[a-z]+", text.lower())
        vector = [sum(word in concept for word in words) for concept in CONCEPTS] + [0.1]
        norm = math.sqrt(sum(x * x for x in vector))
        vectors.append([x / norm for x in vector])
    return vectors
