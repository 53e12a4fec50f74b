"""Text metrics against the reference implementations on a fixed set of 63 pairs (tests/eval/fixtures):
empty, whitespace- and punctuation-only predictions, unicode, numbers, line breaks and answers longer than
BERT's 512-token window. The references are computed by calling pycocoevalcap and bert_score directly as
their READMEs show, and BERTScore once more from the MiniLM token embeddings through transformers."""

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocoevalcap")
pytest.importorskip("bert_score")
if shutil.which("java") is None:
    pytest.skip("pycocoevalcap needs java (apt-get install -y default-jre-headless)", allow_module_level=True)

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: E402

from medvqa.eval import text_metrics as tm  # noqa: E402
from medvqa.eval.bertscore import BERTScore, resolve_model  # noqa: E402

PAIRS = json.loads((Path(__file__).parent / "fixtures" / "text_pairs.json").read_text())
PREDS = [p["prediction"] for p in PAIRS]
REFS = [p["reference"] for p in PAIRS]
IDS = [p["id"] for p in PAIRS]
MINILM = resolve_model("all-MiniLM-L6-v2")
TOL = 1e-6


@pytest.fixture(scope="module")
def ours():
    return tm.text_metrics(
        PREDS, REFS, ids=IDS, bertscore=BERTScore(num_layers=6, batch_size=16, device="cpu")
    )


def pycocoevalcap_direct(preds, refs, only=("bleu", "meteor", "rouge_l", "cider")):
    """The COCO caption evaluation as its README runs it: PTBTokenizer, then each scorer."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r}] for i, r in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    out = {}
    for scorer, names in ((Bleu(4), ["bleu_1", "bleu_2", "bleu_3", "bleu_4"]), (Meteor(), "meteor"),
                          (Rouge(), "rouge_l"), (Cider(), "cider")):  # fmt: skip
        if (names if isinstance(names, str) else "bleu") not in only:
            continue
        score, scores = scorer.compute_score(gts, res)
        if isinstance(names, list):
            out |= {n: (s, list(ss)) for n, s, ss in zip(names, score, scores, strict=True)}
        else:
            out[names] = (score, list(scores))
    return out


def test_fixture_covers_the_hard_cases():
    assert len(PAIRS) >= 50
    assert sum(not p.strip() for p in PREDS) >= 5  # empty / whitespace-only
    assert {"...", "?!", "-", "."} <= set(PREDS)  # punctuation-only
    assert any(not p.isascii() for p in PREDS) and any(ch.isdigit() for p in PREDS for ch in p)
    assert max(len(p.split()) for p in PREDS) > 512  # beyond the encoder window


# 63 pairs through three Java runs and the encoder (~30-70 s): in the fast suite, since the bar is equality
def test_coco_metrics_equal_pycocoevalcap(ours):
    reference = pycocoevalcap_direct(PREDS, REFS)
    for name, (corpus, items) in reference.items():
        assert ours["corpus"][name] == pytest.approx(corpus, abs=TOL), name
        assert [row[name] for row in ours["per_item"]] == pytest.approx(items, abs=TOL), name
    assert [row["id"] for row in ours["per_item"]] == IDS
    assert 0.0 < ours["corpus"]["bleu_1"] < 1.0 and ours["corpus"]["cider"] > 0.0


# 63 pairs through three Java runs and the encoder (~30-70 s): in the fast suite, since the bar is equality
def test_bertscore_equals_bert_score_package(ours):
    from bert_score import score

    keep = [i for i, (p, r) in enumerate(zip(PREDS, REFS, strict=True)) if p.strip() and r.strip()]
    p, r, f = score([PREDS[i] for i in keep], [REFS[i] for i in keep], model_type=MINILM, num_layers=6)
    for key, ref in zip(("bertscore_p", "bertscore_r", "bertscore_f1"), (p, r, f), strict=True):
        got = [ours["per_item"][i][key] for i in keep]
        assert got == pytest.approx(ref.tolist(), abs=TOL), key
        # bert-score's rule for an empty candidate or reference: 0
        assert all(ours["per_item"][i][key] == 0.0 for i in range(len(PAIRS)) if i not in keep)
    mean_f1 = sum(row["bertscore_f1"] for row in ours["per_item"]) / len(PAIRS)
    assert ours["corpus"]["bertscore_f1"] == pytest.approx(mean_f1, abs=TOL)


def greedy_cosine(model, tokenizer, cand: str, ref: str) -> tuple[float, float, float]:
    """BERTScore from its definition: layer-6 embeddings of each sentence on its own (no padding), cosine
    of every candidate token with every reference token, best match per token, [CLS]/[SEP] unweighted."""

    def embed(text):
        enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=512)
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states[6][0]
        return torch.nn.functional.normalize(hidden.double(), dim=-1)

    c, r = embed(cand), embed(ref)
    sim = c @ r.T
    precision = sim[1:-1].max(dim=1).values.mean().item()
    recall = sim[:, 1:-1].max(dim=0).values.mean().item()
    return precision, recall, 2 * precision * recall / (precision + recall)


# 63 pairs through three Java runs and the encoder (~30-70 s): in the fast suite, since the bar is equality
def test_bertscore_equals_greedy_cosine_matching(ours):
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(MINILM).eval(), AutoTokenizer.from_pretrained(MINILM)
    for i, (cand, ref) in enumerate(zip(PREDS, REFS, strict=True)):
        if cand.strip() and ref.strip():
            expected = greedy_cosine(model, tokenizer, cand.strip(), ref.strip())
            row = ours["per_item"][i]
            got = (row["bertscore_p"], row["bertscore_r"], row["bertscore_f1"])
            assert got == pytest.approx(expected, abs=TOL), (i, cand[:40], ref[:40])


def test_any_line_break_inside_an_answer_keeps_items_aligned():
    """pycocoevalcap splits "a\\rb" into two lines and shifts every later item; cleaned text does not."""
    preds, refs = (
        ["left\rlung", "x\u2028y", "heart\x85", "a\x0bb\x0cc"],
        ["left lung", "x y", "heart", "a b c"],
    )
    got = tm.text_metrics(preds, refs, metrics=["rouge_l"])
    expected = pycocoevalcap_direct([" ".join(p.split()) for p in preds], refs, only=["rouge_l"])
    assert [row["rouge_l"] for row in got["per_item"]] == pytest.approx(expected["rouge_l"][1], abs=TOL)
    assert [row["rouge_l"] for row in got["per_item"]] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    raw = pycocoevalcap_direct(preds, refs, only=["rouge_l"])["rouge_l"][1]
    assert list(raw) != pytest.approx([1.0, 1.0, 1.0, 1.0])  # what the cleaning protects against


def test_multiple_references_per_item():
    got = tm.text_metrics(["liver"], [["kidney", "liver"]], metrics=["rouge_l", "bertscore"],
                          bertscore=BERTScore(num_layers=6, device="cpu"))  # fmt: skip
    assert got["per_item"][0]["rouge_l"] == 1.0
    assert got["per_item"][0]["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)


def test_missing_java_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(tm.shutil, "which", lambda name: None)
    with pytest.raises(tm.MetricUnavailableError, match="apt-get install -y default-jre-headless"):
        tm.text_metrics(["a"], ["a"], metrics=["meteor"])
    # BERTScore alone needs no Java
    got = tm.text_metrics(
        ["a"], ["a"], metrics=["bertscore"], bertscore=BERTScore(num_layers=6, device="cpu")
    )
    assert got["corpus"]["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown text metrics"):
        tm.text_metrics(["a"], ["a"], metrics=["bleurt"])
    with pytest.raises(ValueError, match="has no reference"):
        tm.text_metrics(["a"], [[]], metrics=["rouge_l"])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        tm.text_metrics(["a", "b"], ["a"])


def test_bertscore_does_not_depend_on_batch_company():
    """bert-score's batched matching multiplies padded similarities by 0, so a token whose best cosine is
    negative scores 0 when a longer sentence shares its batch: this pair's F1 moved by 1e-3 between a
    256-pair call and a call of its own. Scores must be those of the pair alone (the definition)."""
    pred, ref = "small lesion left enlarged kidney fracture effusion normal right right 252", "mass mass lung"
    company = ["left right lung liver kidney mass lesion nodule effusion fracture normal enlarged " * 3] * 3
    scorer = BERTScore(num_layers=6, batch_size=64, device="cpu")
    alone = scorer.score([pred], [ref])
    batched = scorer.score([pred, *company], [ref, *company[::-1]])
    for key in ("bertscore_p", "bertscore_r", "bertscore_f1"):
        assert batched[key][0] == pytest.approx(alone[key][0], abs=1e-6), key
