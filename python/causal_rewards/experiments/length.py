"""Length bias: in training the better response is usually the longer one.

Each prompt asks to explain a topic ("How does a heat pump work?"). A response has
two core sentences, each substantive (names the mechanism) or empty (vague), quality = number of
substantive ones, plus zero to four filler sentences that add words and nothing else ("There are
many ways to think about this."). The preferred response has the higher quality.

Training split: the preferred response is the longer one (2-4 filler sentences against 0-1, redrawn
until the word counts agree) with probability ``p_longer_chosen`` = 0.8, so length follows the
preference; a share
``label_noise`` of the pairs have their quality order flipped, the length still following the
preferred one.

Test splits:
  - ``iid``: drawn like training, without label noise (overall accuracy).
  - ``balanced``: the preferred response is the longer one in exactly half of the pairs
    (accuracy on length-balanced pairs; Spearman correlation of reward with length in words over
    all its responses).

Z = length in words (quantile bins).

Counterfactual of a response (``flip``): the same core sentences with the padding flipped, a long
response (2-4 filler sentences) stripped of its filler, a short one (0-1) padded to 2-4.
"""

from __future__ import annotations

import numpy as np

from .data import (
    BiasTask,
    PairSplit,
    check_probability,
    check_sizes,
    make_counterfactuals,
    pick,
    sentences,
    split_rngs,
    word_count,
)

# topic: (substantive facts, the thing that is explained)
TOPICS = {
    "a heat pump": ("it moves heat with a refrigerant cycle", "a compressor raises the refrigerant's temperature",
                  "an evaporator absorbs heat from the outside air"),
    "a vaccine": ("it trains the immune system with a harmless antigen", "memory cells remember the pathogen",
                "antibodies are produced before any real infection"),
    "a rainbow": ("sunlight is refracted inside raindrops", "each colour bends by a different angle",
                "light reflects once off the back of the drop"),
    "a bank loan": ("the lender charges interest on the principal", "monthly payments cover interest and principal",
                  "a credit check sets the interest rate"),
    "a solar panel": ("photons free electrons in silicon cells", "an inverter turns direct current into alternating current",
                    "the junction in each cell creates a voltage"),
    "a compiler": ("it translates source code into machine code", "a parser builds a syntax tree",
                 "an optimiser rewrites the code to run faster"),
    "the tide": ("the moon's gravity pulls the oceans", "the earth's rotation moves coastlines through two bulges",
             "the sun adds a smaller pull that makes spring tides"),
    "a jet engine": ("it compresses air and burns fuel in it", "hot exhaust leaves the nozzle at high speed",
                   "a turbine drives the compressor at the front"),
    "a password hash": ("the password is turned into a fixed-length digest", "a random salt makes equal passwords differ",
                      "the hash cannot be reversed to the password"),
    "photosynthesis": ("plants turn light into chemical energy", "chlorophyll absorbs red and blue light",
                       "carbon dioxide and water become glucose and oxygen"),
    "an earthquake": ("tectonic plates lock and then slip", "stored strain is released as seismic waves",
                   "the focus is where the rock first breaks"),
    "a thermostat": ("it compares the room temperature with a set point", "a sensor measures the air temperature",
                   "the heating switches off once the set point is reached"),
}

PROMPTS = (
    "How does {topic} work?",
    "Explain how {topic} works.",
    "Can you tell me how {topic} works?",
    "What is the basic idea behind {topic}?",
    "Give me a quick explanation of {topic}.",
)

SUBSTANTIVE = (
    "In short, {fact}.",
    "The key point is that {fact}.",
    "Put simply, {fact}.",
    "Essentially, {fact}.",
    "What matters is that {fact}.",
)

EMPTY = (
    "It is a complicated thing that works in its own way.",
    "Honestly, it just sort of happens.",
    "Nobody really knows the details.",
    "It works the way you would expect.",
    "It is hard to explain, it just does its job.",
    "There is some technical process involved.",
)

FILLER = (
    "There are many ways to think about this.",
    "This is a question that a lot of people ask.",
    "It is worth taking a moment to consider it.",
    "I hope this explanation is useful to you.",
    "Let me know if you would like to hear more.",
    "Thanks for asking such an interesting question.",
    "Many people find this topic fascinating.",
    "It has a long and interesting history.",
)

CORE_SENTENCES = 2


def _response(rng, topic: str, quality: int, fillers: int) -> str:
    facts = list(TOPICS[topic])
    rng.shuffle(facts)
    kinds = np.array([True] * quality + [False] * (CORE_SENTENCES - quality))
    rng.shuffle(kinds)
    empty = rng.choice(len(EMPTY), size=CORE_SENTENCES, replace=False)
    core = [pick(rng, SUBSTANTIVE).format(fact=facts[i]) if good else EMPTY[empty[i]] for i, good in enumerate(kinds)]
    return _pad(rng, core, fillers)


def _pad(rng, core: list[str], fillers: int) -> str:
    """Filler at the start and the end, the core in the middle: length without content."""
    filler = [FILLER[i] for i in rng.choice(len(FILLER), size=fillers, replace=False)]
    split = int(rng.integers(fillers + 1))
    return " ".join(filler[:split] + core + filler[split:])


def flip(rng, response: str, words) -> tuple[str, int]:
    """The response with its padding flipped: long -> no filler, short -> 2-4 filler sentences."""
    parts = sentences(response)
    core = [p for p in parts if p not in FILLER]
    fillers = 0 if len(parts) - len(core) >= 2 else int(rng.integers(2, 5))
    text = _pad(rng, core, fillers)
    return text, len(text.split())


def _pairs(rng, n: int, p_longer_chosen: float, label_noise: float, balanced: bool) -> PairSplit:
    prompts, chosen, rejected = [], [], []
    q_c, q_r, longer = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    if balanced:
        longer[:] = np.arange(n) % 2
        rng.shuffle(longer)
    topics = list(TOPICS)
    for i in range(n):
        topic = pick(rng, topics)
        prompts.append(pick(rng, PROMPTS).format(topic=topic))
        worse = int(rng.integers(0, CORE_SENTENCES))
        better = worse + 1
        if rng.random() < label_noise:
            better, worse = worse, better
        q_c[i], q_r[i] = better, worse
        if not balanced:
            longer[i] = rng.random() < p_longer_chosen
        while True:  # redraw until the word counts order the pair as intended (rarely needed)
            long_pad, short_pad = int(rng.integers(2, 5)), int(rng.integers(0, 2))
            pad_c, pad_r = (long_pad, short_pad) if longer[i] else (short_pad, long_pad)
            c, r = _response(rng, topic, better, pad_c), _response(rng, topic, worse, pad_r)
            if (len(c.split()) > len(r.split())) == bool(longer[i]) and len(c.split()) != len(r.split()):
                break
        chosen.append(c)
        rejected.append(r)
    len_c, len_r = word_count(chosen), word_count(rejected)
    info = {"quality_chosen": q_c, "quality_rejected": q_r, "length_chosen": len_c, "length_rejected": len_r,
                "chosen_longer": longer}
    return PairSplit(prompts, chosen, rejected, len_c.copy(), len_r.copy(), info)


def make_length(n_train: int = 1000, n_test: int = 400, *, seed: int = 0, p_longer_chosen: float = 0.8,
                label_noise: float = 0.2, num_bins: int = 10) -> BiasTask:
    """The length task: ``n_train`` training pairs, ``n_test`` pairs in each test split."""
    check_sizes(n_train=n_train, n_test=n_test, num_bins=num_bins)
    check_probability("p_longer_chosen", p_longer_chosen)
    check_probability("label_noise", label_noise)
    rngs = split_rngs(seed, ("train", "iid", "balanced", "counterfactual"))
    train = _pairs(rngs["train"], n_train, p_longer_chosen, label_noise, balanced=False)
    balanced = _pairs(rngs["balanced"], n_test, p_longer_chosen, 0.0, balanced=True)
    return BiasTask(
        name="length",
        description=(f"Explanations padded with filler; in training the preferred response is the longer "
                     f"one {p_longer_chosen:.0%} of the time."),
        spurious="response length in words",
        binning="quantile",
        num_bins=num_bins,
        train=train,
        tests={"iid": _pairs(rngs["iid"], n_test, p_longer_chosen, 0.0, balanced=False), "balanced": balanced},
        counterfactuals={name: make_counterfactuals(rngs["counterfactual"], split, flip)
                         for name, split in (("train", train), ("balanced", balanced))},
    )
