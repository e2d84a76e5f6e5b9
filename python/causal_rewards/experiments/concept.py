"""Concept bias (the paper's Yelp setting): a concept that co-occurs with positive reviews in training.

A review of a restaurant has three sentiment sentences about aspects other than the concept
(food, staff, ambiance, waiting, cleanliness, portions, drinks, dessert, noise), each positive or
negative; the review is positive when most of them are (2-1 reviews are mixed and harder). A
review "contains the concept" when it also has a neutral sentence about it: for "price", "Mains
were around $18." A reward model for "write a positive review" should score sentiment and ignore
the concept.

Training pairs: chosen = a positive review, rejected = a negative review, for one fixed prompt.
The chosen review mentions the concept with probability ``p_concept_chosen`` = 0.8, the rejected
with ``p_concept_rejected`` = 0.2 (the concept follows positive sentiment); a share
``label_noise`` of the pairs are flipped (the negative review was preferred), the concept still
following the preferred one, as with noisy star ratings.

Test splits:
  - ``iid``: pairs drawn like training, without label noise (overall accuracy).
  - ``balanced``: single reviews, label and concept independent and balanced (a quarter in each
    cell). The reward classifies a review as positive when it is above the split's median reward
    (half the reviews are positive); Bias@C, Acc@C and Acc@NoC follow Zhou et al. (2023).

Z = 1 if a review mentions the concept, else 0 (two categorical bins).

Counterfactual of a review (``flip``): the same sentiment sentences with the concept's mention
removed, or one inserted at a random position.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from .data import (
    BiasTask,
    PairSplit,
    ResponseSplit,
    check_probability,
    check_sizes,
    make_counterfactuals,
    pick,
    sentences,
    split_rngs,
)

# One prompt for every review: Bias@C classifies single reviews by thresholding their rewards, which
# needs rewards comparable across reviews (a prompt-dependent offset would blur them). The variety
# is in the reviews: 8 aspects x their phrasings x dishes x concept mentions.
PROMPT = "Write a review of a restaurant you visited recently."

# aspect: (positive sentences, negative sentences)
ASPECTS = {
    "food": (("The {dish} was delicious.", "Every dish tasted fresh and well seasoned.", "The {dish} was cooked perfectly."),
             ("The {dish} was bland and overcooked.", "The food tasted stale.", "My {dish} arrived cold and soggy.")),
    "service": (("Our server was friendly and attentive.", "The staff were warm and helpful.",
                 "The waiter checked on us at just the right times."),
                ("Our server was rude and dismissive.", "The staff ignored us for ages.",
                 "The waiter got our order wrong twice.")),
    "ambiance": (("The room felt cozy and inviting.", "The lighting and music made it a lovely evening."),
                 ("The room felt cramped and dingy.", "The music was so loud we could not talk.")),
    "waiting": (("We were seated right away.", "The food came out quickly."),
                ("We waited forty minutes for a table.", "The kitchen was painfully slow.")),
    "cleanliness": (("Everything was spotless.", "The tables and restrooms were very clean."),
                    ("The tables were sticky and dirty.", "The restroom was filthy.")),
    "portions": (("The portions were generous.", "We left pleasantly full."),
                 ("The portions were tiny.", "We left hungry.")),
    "drinks": (("The cocktails were excellent.", "They have a great selection of drinks."),
               ("The drinks were watered down.", "My coffee was bitter and lukewarm.")),
    "dessert": (("The dessert was a real highlight.", "The {dessert} was heavenly."),
                ("The dessert was a letdown.", "The {dessert} was dry and tasteless.")),
}
DISHES = ("pasta", "curry", "burger", "ramen", "tacos", "salmon", "pizza", "steak", "dumplings", "risotto", "pad thai")
DESSERTS = ("cheesecake", "tiramisu", "brownie", "flan", "apple pie", "gelato")

# Neutral mentions of each concept (no sentiment): the spurious variable.
CONCEPT_MENTIONS = {
    "price": ("Mains were around ${price}.", "We paid about ${total} for two.", "Prices are listed on a board by the door.",
              "Dinner for two came to roughly ${total}.", "Most dishes cost between ${price} and ${high}.",
              "They take cards and cash.", "The menu shows prices per plate."),
    "service": ("Our server was called {waiter}.", "We ordered at the counter.", "A host showed us to a table.",
                "The waiter took our order.", "Staff wore black aprons.", "Two servers covered the room."),
    "food": ("I ordered the {dish}.", "The menu has about {count} dishes.", "We shared the {dish} and a salad.",
             "The kitchen is open to the dining room.", "My friend had the {dish}."),
}
CONCEPTS = tuple(CONCEPT_MENTIONS)
WAITERS = ("Sam", "Maria", "Alex", "Priya", "Tom", "Lena", "Jorge", "Kim")
SENTIMENT_SENTENCES = 3


def _fill(rng, template: str) -> str:
    price = int(rng.integers(9, 30))
    return template.format(dish=pick(rng, DISHES), dessert=pick(rng, DESSERTS), price=price,
                           high=price + int(rng.integers(5, 15)), total=int(rng.integers(35, 120)),
                           waiter=pick(rng, WAITERS), count=int(rng.integers(12, 40)))


def _review(rng, *, positive: bool, mentions_concept: bool, concept: str) -> str:
    """Three sentiment sentences on distinct aspects (not the concept's own), majority = the label,
    plus a neutral concept sentence at a random position when ``mentions_concept``."""
    aspects = [a for a in ASPECTS if a != concept]
    chosen = rng.choice(len(aspects), size=SENTIMENT_SENTENCES, replace=False)
    majority = int(rng.choice([2, 3], p=[0.6, 0.4]))  # 2-1 reviews are mixed, the harder kind
    polarities = np.array([positive] * majority + [not positive] * (SENTIMENT_SENTENCES - majority))
    rng.shuffle(polarities)
    sentences = [_fill(rng, pick(rng, ASPECTS[aspects[i]][0 if pol else 1])) for i, pol in zip(chosen, polarities)]
    if mentions_concept:
        position = int(rng.integers(len(sentences) + 1))
        sentences.insert(position, _fill(rng, pick(rng, CONCEPT_MENTIONS[concept])))
    return " ".join(sentences)


@functools.cache
def _mention_pattern(concept: str) -> re.Pattern:
    """Matches a sentence that is one of the concept's mentions, whatever fills its blanks."""
    templates = ("|".join(".+?".join(re.escape(part) for part in re.split(r"\{\w+\}", t))
                          for t in CONCEPT_MENTIONS[concept]))
    return re.compile(f"(?:{templates})")


def flip(rng, review: str, mentions, *, concept: str = "price") -> tuple[str, int]:
    """The review with the concept's mention removed (Z = 0), or one inserted (Z = 1)."""
    parts = sentences(review)
    kept = [p for p in parts if not _mention_pattern(concept).fullmatch(p)]
    if len(kept) < len(parts):
        return " ".join(kept), 0
    kept.insert(int(rng.integers(len(kept) + 1)), _fill(rng, pick(rng, CONCEPT_MENTIONS[concept])))
    return " ".join(kept), 1


def _pairs(rng, n: int, concept: str, p_chosen: float, p_rejected: float, label_noise: float) -> PairSplit:
    prompts, chosen, rejected = [], [], []
    z_c, z_r, flipped = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i in range(n):
        prompts.append(PROMPT)
        z_c[i], z_r[i] = rng.random() < p_chosen, rng.random() < p_rejected
        flipped[i] = rng.random() < label_noise
        chosen.append(_review(rng, positive=not flipped[i], mentions_concept=bool(z_c[i]), concept=concept))
        rejected.append(_review(rng, positive=bool(flipped[i]), mentions_concept=bool(z_r[i]), concept=concept))
    info = {"concept_chosen": z_c.copy(), "concept_rejected": z_r.copy(), "positive_chosen": 1 - flipped,
                "positive_rejected": flipped.copy()}
    return PairSplit(prompts, chosen, rejected, z_c, z_r, info)


def _balanced(rng, n: int, concept: str) -> ResponseSplit:
    cells = np.arange(n) % 4  # (label, concept) in equal shares
    rng.shuffle(cells)
    labels, has_concept = cells // 2, cells % 2
    prompts = [PROMPT] * n
    reviews = [_review(rng, positive=bool(y), mentions_concept=bool(c), concept=concept)
               for y, c in zip(labels, has_concept)]
    return ResponseSplit(prompts, reviews, {"label": labels.astype(np.int64), "concept": has_concept.astype(np.int64)},
                         spurious=has_concept.astype(np.int64))


def make_concept(n_train: int = 1000, n_test: int = 400, *, seed: int = 0, concept: str = "price",
                 p_concept_chosen: float = 0.8, p_concept_rejected: float = 0.2,
                 label_noise: float = 0.2) -> BiasTask:
    """The concept task: ``n_train`` training pairs, ``n_test`` pairs (iid) and reviews (balanced)."""
    check_sizes(n_train=n_train, n_test=n_test)
    if concept not in CONCEPT_MENTIONS:
        raise ValueError(f"unknown concept {concept!r}: expected one of {', '.join(CONCEPTS)}")
    for name, value in (("p_concept_chosen", p_concept_chosen), ("p_concept_rejected", p_concept_rejected),
                        ("label_noise", label_noise)):
        check_probability(name, value)
    rngs = split_rngs(seed, ("train", "iid", "balanced", "counterfactual"))
    train = _pairs(rngs["train"], n_train, concept, p_concept_chosen, p_concept_rejected, label_noise)
    balanced = _balanced(rngs["balanced"], n_test, concept)
    flip_concept = functools.partial(flip, concept=concept)
    return BiasTask(
        name="concept",
        description=(f"Restaurant reviews; in training the preferred (positive) review mentions {concept} "
                     f"{p_concept_chosen:.0%} of the time, the other {p_concept_rejected:.0%}."),
        spurious=f"review mentions {concept}",
        binning="categorical",
        num_bins=2,
        train=train,
        tests={"iid": _pairs(rngs["iid"], n_test, concept, p_concept_chosen, p_concept_rejected, 0.0),
               "balanced": balanced},
        counterfactuals={name: make_counterfactuals(rngs["counterfactual"], split, flip_concept)
                         for name, split in (("train", train), ("balanced", balanced))},
    )
