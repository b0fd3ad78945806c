"""Texts the filter tests share: prose that every rule set keeps, written for these tests."""

PARAGRAPHS = [
    "The river town wakes up slowly in the autumn, when the fog lifts from the water and the "
    "boats come back to the harbour. Fishermen sort their catch on the pier while the bakers "
    "open their shops and the smell of fresh bread drifts along the narrow streets.",
    "Most visitors arrive by train in the late morning. They walk to the old bridge, take a few "
    "pictures of the castle on the hill and then look for a table in one of the cafés that line "
    "the square. The locals have seen this many times, and they are happy to give directions.",
    "In the afternoon the market fills with farmers who have driven in from the valleys with "
    "apples, cheese and honey. Prices are written on small chalk boards, and a little bargaining "
    "is expected. By evening the stalls are gone and the town returns to its quiet routine.",
]
GOOD_TEXT = "\n\n".join(PARAGRAPHS)
