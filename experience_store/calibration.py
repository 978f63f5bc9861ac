"""Measure where a dedup threshold belongs for an embedding model.

Two sets of experience-style sentence pairs: paraphrases (the same lesson in other words; a second
copy should be caught as a duplicate) and related-but-different lessons from the same domain (both
must be kept). Unrelated pairs are formed by crossing paraphrase pairs. `calibrate(embedder)`
reports the cosine ranges and a suggested threshold: above every related-but-different pair, since
wrongly dropping a new lesson costs more than keeping a near-duplicate the learner can merge later:
related-but-different maximum + 0.10 margin, rounded up to a multiple of 0.05.
"""

from __future__ import annotations

import numpy as np

from .embed import Embedder

PARAPHRASES: list[tuple[str, str]] = [
    ("Convert percentages to decimals before multiplying.",
     "Before multiplying, turn any percentage into its decimal form."),
    ("Re-read the question to confirm which quantity is being asked for before giving the final answer.",
     "Before answering, check the question again to make sure you report the quantity it asks for."),
    ("Keep track of units and convert them to a common unit before adding.",
     "Convert all quantities to the same unit before summing them."),
    ("When a problem gives a rate and a time, multiply them to get the total amount.",
     "Total amount equals the rate times the time; multiply the two when both are given."),
    ("Verify the final answer by substituting it back into the original equation.",
     "Check your solution by plugging it back into the starting equation."),
    ("Put the final numeric answer inside \\boxed{} with no units.",
     "Write only the final number in \\boxed{}, without units."),
    ("Break multi-step word problems into small steps and compute each intermediate value explicitly.",
     "Split long word problems into steps and write down every intermediate result."),
    ("When the problem mentions 'each', multiply the per-item value by the number of items.",
     "The word 'each' signals multiplying the value per item by how many items there are."),
    ("Do not round intermediate results; round only the final answer.",
     "Keep full precision during the calculation and round only at the end."),
    ("If a discount is applied after a tax, compute the tax first and then the discount.",
     "When tax comes before the discount, apply the tax first, then take the discount."),
    ("In age problems, add the same number of years to every person's age when moving in time.",
     "When an age problem jumps forward or back in time, shift everyone's age by the same number of years."),
    ("Search the documentation before calling an unfamiliar tool.",
     "Look up the docs for a tool you have not used before invoking it."),
    ("If the Python tool returns an error, read the traceback and fix the code instead of guessing.",
     "When the code tool fails, use the error message to correct the code rather than guessing."),
    ("Count the days inclusively when the problem says 'from Monday to Friday'.",
     "Treat 'from Monday to Friday' as including both end days when counting."),
    ("Half of a quantity means dividing it by two, not subtracting two.",
     "'Half of' means divide by 2; do not subtract 2."),
    ("Answer with the name of the entity only, not a full sentence.",
     "Reply with just the entity's name instead of a complete sentence."),
]

NEAR_VERBATIM: list[tuple[str, str]] = [
    ("Convert percentages to decimals before multiplying.",
     "Convert percentages into decimals before you multiply."),
    ("Verify the final answer by substituting it back into the original equation.",
     "Verify the final answer by substituting it back into the original equation!"),
    ("Do not round intermediate results; round only the final answer.",
     "Don't round intermediate results - only round the final answer."),
    ("Search the documentation before calling an unfamiliar tool.",
     "Always search the documentation before calling a tool you do not know."),
    ("Answer with the name of the entity only, not a full sentence.",
     "Answer with only the entity name, not a full sentence."),
    ("Half of a quantity means dividing it by two, not subtracting two.",
     "Half of a quantity means dividing by two rather than subtracting two."),
]

RELATED_DIFFERENT: list[tuple[str, str]] = [
    ("Convert percentages to decimals before multiplying.",
     "Convert fractions to a common denominator before adding them."),
    ("Re-read the question to confirm which quantity is being asked for.",
     "Re-read the question to find every number it gives."),
    ("Keep track of units and convert them to a common unit before adding.",
     "Keep track of negative signs when subtracting."),
    ("Verify the final answer by substituting it back into the original equation.",
     "Verify that the final answer is a whole number when the question counts objects."),
    ("Put the final numeric answer inside \\boxed{} with no units.",
     "State the units in the final sentence but not inside the equation."),
    ("Do not round intermediate results; round only the final answer.",
     "Round money amounts to two decimal places."),
    ("If a discount is applied after a tax, compute the tax first and then the discount.",
     "A 20% increase followed by a 20% decrease leaves less than the original amount."),
    ("Search the documentation before calling an unfamiliar tool.",
     "Call the search tool with short keyword queries rather than full sentences."),
    ("When the problem mentions 'each', multiply the per-item value by the number of items.",
     "When the problem mentions 'total', add up all the parts."),
    ("Half of a quantity means dividing it by two.",
     "Twice a quantity means multiplying it by two."),
    ("Count the days inclusively when the problem says 'from Monday to Friday'.",
     "A week has seven days; convert weeks to days by multiplying by 7."),
    ("Answer with the name of the entity only, not a full sentence.",
     "Answer with a number only, no words."),
    ("If the Python tool returns an error, read the traceback and fix the code.",
     "Use the Python tool for arithmetic with large numbers."),
    ("Break multi-step word problems into small steps.",
     "Use variables to name unknown quantities before writing equations."),
]


def pair_cosines(embedder: Embedder, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Cosine similarity of each (a, b) pair (each distinct text embedded once)."""
    texts = list(dict.fromkeys(t for pair in pairs for t in pair))
    vecs = dict(zip(texts, embedder.embed(texts)))
    return np.array([float(vecs[a] @ vecs[b]) for a, b in pairs], dtype=np.float32)


def calibrate(embedder: Embedder) -> dict[str, float]:
    """Cosine ranges of paraphrase / related-but-different / unrelated pairs and a suggested threshold."""
    crossed = [(PARAPHRASES[i][0], PARAPHRASES[(i + 5) % len(PARAPHRASES)][1]) for i in range(len(PARAPHRASES))]
    groups = [PARAPHRASES, NEAR_VERBATIM, RELATED_DIFFERENT, crossed]
    sims = pair_cosines(embedder, [p for group in groups for p in group])
    bounds = np.cumsum([0] + [len(g) for g in groups])
    para, near, related, unrelated = (sims[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    suggested = round(float(np.ceil(round((float(related.max()) + 0.10) * 20, 6)) / 20), 2)
    return {
        "paraphrase_min": float(para.min()),
        "paraphrase_median": float(np.median(para)),
        "related_max": float(related.max()),
        "related_median": float(np.median(related)),
        "unrelated_max": float(unrelated.max()),
        "near_verbatim_min": float(near.min()),
        "paraphrases_caught_at_suggested": float(np.mean(para >= suggested)),
        "near_verbatim_caught_at_suggested": float(np.mean(near >= suggested)),
        "suggested": suggested,
    }
