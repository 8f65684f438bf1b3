"""A small probabilistic grammar of English-like sentences: the default corpus of the ``text`` task.

The default text run needs no download, so its corpus is generated at load time from a fixed seed
(nothing is shipped). The language is small but not trivial to predict byte by byte; what a
model can learn from it grows with the context it sees:

- **spelling**: 60-odd words, so inside a word the next byte follows from the previous few bytes;
- **agreement**: a verb agrees in number with its subject (``the fox runs`` / ``the foxes run``,
  ``is`` / ``are``, ``has`` / ``have``), and number words and determiners agree with their noun
  (``one fox``, ``three foxes``, ``a fox``, ``these foxes``), irregular plurals included
  (``mouse`` / ``mice``, ``child`` / ``children``);
- **nested clauses**: a subject may carry a relative clause (``the dog that the cats see runs``),
  so the agreeing verb can come many words after its subject; clauses nest up to depth 2;
- **structure**: transitive verbs take an object, optional adjectives, adverbs and prepositional
  phrases, sentences joined by ``and`` / ``because``, 3-6 sentences per line.

Generation is deterministic: the same ``seed`` and ``num_bytes`` give the same text on every
platform (uniforms from one ``numpy.random.Generator``, drawn in blocks and consumed in a fixed
order; 200 kB take about 0.1 s).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence

import numpy as np

#: ``(singular, plural)`` nouns.
NOUNS: tuple[tuple[str, str], ...] = (
    ("cat", "cats"),
    ("dog", "dogs"),
    ("bird", "birds"),
    ("fox", "foxes"),
    ("child", "children"),
    ("mouse", "mice"),
    ("farmer", "farmers"),
    ("teacher", "teachers"),
    ("queen", "queens"),
    ("wolf", "wolves"),
    ("robot", "robots"),
    ("sheep", "sheep"),
)
#: ``(singular, plural)`` transitive verb forms (the singular takes the subject ``he``/``she``/``it``).
TRANSITIVE: tuple[tuple[str, str], ...] = (
    ("sees", "see"),
    ("chases", "chase"),
    ("likes", "like"),
    ("finds", "find"),
    ("watches", "watch"),
    ("follows", "follow"),
    ("helps", "help"),
    ("carries", "carry"),
)
#: ``(singular, plural)`` intransitive verb forms.
INTRANSITIVE: tuple[tuple[str, str], ...] = (
    ("runs", "run"),
    ("sleeps", "sleep"),
    ("sings", "sing"),
    ("jumps", "jump"),
    ("waits", "wait"),
    ("laughs", "laugh"),
)
ADJECTIVES: tuple[str, ...] = ("small", "big", "red", "old", "happy", "quiet", "green", "brave", "lazy")
ADVERBS: tuple[str, ...] = ("quickly", "slowly", "today", "again", "happily")
PREPOSITIONS: tuple[str, ...] = ("near", "under", "behind", "with")
PLACES: tuple[str, ...] = ("the river", "the tree", "the house", "the hill", "the old bridge")
#: Determiners of a singular noun (``a`` is written ``an`` before a vowel).
SINGULAR_DETERMINERS: tuple[str, ...] = ("the", "a", "one", "every", "this")
#: Determiners of a plural noun: number words force the plural.
PLURAL_DETERMINERS: tuple[str, ...] = ("the", "some", "these", "many", "two", "three", "four", "five", "seven", "ten")
#: Deepest nesting of relative clauses.
MAX_DEPTH = 2
#: Running sums of the probabilities of 0, 1, 2 adjectives in a noun phrase.
_ADJECTIVE_COUNTS = tuple(itertools.accumulate((0.55, 0.35, 0.1)))
#: Running sums of the probabilities of intransitive, transitive, ``is``, ``has`` verb phrases.
_VERB_PHRASE_KINDS = tuple(itertools.accumulate((0.3, 0.45, 0.15, 0.1)))
#: Uniforms drawn from the generator at a time (one numpy call per block, not per choice).
_BLOCK = 4096


def _uniforms(rng: np.random.Generator) -> Iterator[float]:
    """An endless stream of U[0, 1) floats from ``rng``, drawn in blocks."""
    while True:
        yield from rng.random(_BLOCK).tolist()


class _Sampler:
    """The grammar's productions, each consuming uniforms from one stream in a fixed order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.uniforms = _uniforms(rng)

    def index(self, n: int) -> int:
        """A uniform index in ``[0, n)``."""
        return int(next(self.uniforms) * n)

    def weighted(self, cumulative: Sequence[float]) -> int:
        """An index drawn with the probabilities whose running sums are ``cumulative`` (last = 1)."""
        return min(bisect.bisect_right(cumulative, next(self.uniforms)), len(cumulative) - 1)

    def pick(self, options: Sequence[str]) -> str:
        return options[self.index(len(options))]

    def chance(self, p: float) -> bool:
        return next(self.uniforms) < p

    def noun_phrase(self, plural: bool, depth: int) -> str:
        """Determiner, 0-2 adjectives, noun; sometimes a relative clause (subject or object gap)."""
        words = [self.pick(ADJECTIVES) for _ in range(self.weighted(_ADJECTIVE_COUNTS))]
        noun = NOUNS[self.index(len(NOUNS))][int(plural)]
        determiner = self.pick(PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
        first = (words or [noun])[0]
        if determiner == "a" and first[0] in "aeiou":
            determiner = "an"
        phrase = " ".join([determiner, *words, noun])
        if depth < MAX_DEPTH and self.chance(0.3 / (depth + 1)):
            phrase += " " + self.relative_clause(plural, depth + 1)
        return phrase

    def relative_clause(self, plural: bool, depth: int) -> str:
        """``that VP`` (agrees with the head noun) or ``that NP V`` (agrees with the inner subject)."""
        if self.chance(0.5):
            return "that " + self.verb_phrase(plural, depth)
        inner = self.chance(0.5)
        return f"that {self.noun_phrase(inner, depth)} {TRANSITIVE[self.index(len(TRANSITIVE))][int(inner)]}"

    def verb_phrase(self, plural: bool, depth: int) -> str:
        """A verb agreeing with ``plural``: intransitive (+ adverb), transitive + object, ``is``/``has`` forms."""
        kind = self.weighted(_VERB_PHRASE_KINDS)
        if kind == 0:
            phrase = INTRANSITIVE[self.index(len(INTRANSITIVE))][int(plural)]
            if self.chance(0.4):
                phrase += " " + self.pick(ADVERBS)
        elif kind == 1:
            verb = TRANSITIVE[self.index(len(TRANSITIVE))][int(plural)]
            phrase = f"{verb} {self.noun_phrase(self.chance(0.5), depth)}"
        elif kind == 2:
            phrase = f"{'are' if plural else 'is'} {self.pick(ADJECTIVES)}"
        else:
            phrase = f"{'have' if plural else 'has'} {self.noun_phrase(self.chance(0.5), depth)}"
        if self.chance(0.2):
            phrase += f" {self.pick(PREPOSITIONS)} {self.pick(PLACES)}"
        return phrase

    def clause(self) -> str:
        plural = self.chance(0.5)
        return f"{self.noun_phrase(plural, 0)} {self.verb_phrase(plural, 0)}"

    def sentence(self) -> str:
        text = self.clause()
        if self.chance(0.2):
            text += f" {self.pick(('and', 'because'))} {self.clause()}"
        return text + "."


def generate_corpus(num_bytes: int, seed: int) -> bytes:
    """ASCII text of at least ``num_bytes`` bytes (whole lines of 3-6 sentences), the same for the same arguments."""
    if num_bytes < 1:
        raise ValueError(f"num_bytes must be >= 1, got {num_bytes}")
    sampler = _Sampler(np.random.default_rng(seed))
    lines: list[str] = []
    size = 0
    while size < num_bytes:
        line = " ".join(sampler.sentence() for _ in range(3 + sampler.index(4))) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode("ascii")
