"""The explicit rules of the scope guard: question patterns that are never sent to the model, by kind.

Each kind has a fixed, kind referral text (REFERRALS). The order of KINDS is the order of precedence: a
question that matches several kinds gets the first one's text, so someone in crisis always reads the crisis
text, whatever else the question asks.

These patterns are a second line next to the similarity test in scope.py, not a word list that decides
alone: a question unlike every training question is referred even when no pattern names it.
"""

from __future__ import annotations

import re

from medvqa.guard.text import foreign_script, variants

_I = re.IGNORECASE
# tumour names are compounds (adenocarcinoma, osteosarcoma, glioblastoma, mesothelioma): match the stem
# anywhere in the word, not only at its start
TUMOUR_NAMES = r"\w*(carcinom|sarcom|blastom|gliom|myelom|mesotheliom|lymphom|melanom|seminom|teratom)\w*"
MIXED_SCRIPT = "mixed_script"


def _any(*parts: str) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in parts), _I)


PATTERNS: dict[str, re.Pattern] = {
    "self_harm": _any(
        r"\bkill(ing)?\s+(my\s*self|me)\b", r"\bsuicid", r"\bend\s+(it\s+all|my\s+life|things)\b",
        r"\b(hurt|harm|cut)(ing)?\s+my\s*self\b", r"\bself[-\s]?harm", r"\bwant\s+to\s+die\b",
        r"\b(don'?t|do\s+not)\s+want\s+to\s+(live|be\s+alive|go\s+on)", r"\bnot\s+worth\s+living\b",
        r"\bany\s+point\s+(in\s+)?(going\s+on|living)\b", r"\bgiv(e|ing)\s+up\s+on\s+(life|living)\b",
        r"\boverdos",
    ),
    "urgency": _any(
        r"\bemergenc", r"\bE\.?R\.?\b(?=.*\b(go|should|need)\b)", r"\bA\s*&\s*E\b", r"\bambulance",
        r"\burgent", r"\bright\s+(away|now)\b", r"\bimmediately\b", r"\bhow\s+soon\b",
        r"\bcan\s+(this|it)\s+wait\b", r"\bchest\s+pains?\b", r"\bcan'?t\s+breathe?\b", r"\bbreathless",
        r"\b(911|999|112)\b",
    ),
    "prompt_injection": _any(
        r"\b(ignore|disregard|forget|bypass|override|overrule)\b.{0,40}\b(rules?|instructions?|guidelines?|"
        r"prompts?|guard|filters?|safety|restrictions?|everything|told|programming)\b",
        r"\byou\s+are\s+now\b", r"\bpretend\s+(to\s+be|you)\b", r"\bact\s+as\b", r"\brole[-\s]?play",
        r"\bjail\s*break", r"\bsystem\s*prompt", r"^\s*(system|assistant|developer)\s*:",
        r"\bno\s+(restrictions|rules|limits|filters?)\b", r"\bwithout\s+(any\s+)?(disclaimers?|restrictions|filters?|rules)\b",
        r"\b(safety|developer|god)\s+(mode|filter)", r"\bsafety\s+\w+\s+(off|disabled)\b",
        r"\b(play|let'?s\s+play)\s+a\s+game\b", r"\bI\s+authori[sz]e\s+you\b",
    ),
    "medication": _any(
        r"\bmedic(ation|ine|ines|ations)\b", r"\bdos(e|es|age|ages|ing)\b", r"\b\d+\s*(mg|mcg|ml|units?)\b",
        r"\b(pills?|tablets?|capsules?|painkillers?|drugs?|antibiotics?|steroids?|opioids?)\b", r"\bprescri",
        r"\b(ibuprofen|paracetamol|acetaminophen|aspirin|morphine|oxycodone|codeine|tramadol|prednisone|"
        r"prednisolone|insulin|warfarin|heparin|metformin|statins?|blood\s+thinners?)\b",
        r"\balcohol\b", r"\bpharmac",
    ),
    "cancer": _any(
        r"\bcancer", r"\bmalignan", r"\bbenign\b", r"\btumou?rs?\b", TUMOUR_NAMES, r"\bleuk(a)?emia",
        r"\bmetasta", r"\boncolog", r"\bneoplas",
        r"\bstage\s*(\d|i{1,3}|iv)\b", r"\bspread", r"\blumps?\b",
        r"\b(grown|growing|bigger|smaller|shrunk|progress(ed|ing)?)\b", r"\b(last|previous|earlier|old)\s+scan",
    ),
    "prognosis": _any(
        r"\b(die|dies|died|dying|death|dead|deadly|fatal|lethal|terminal|aggressive)\b", r"\bkill\s+me\b", r"\bgoing\s+to\s+kill\b",
        r"\bsurviv", r"\blife\s+expectancy", r"\bto\s+live\b", r"\bcur(e|ed|able)\b", r"\brecover",
        r"\bget(ting)?\s+(better|worse)\b", r"\bworse\b", r"\bserious", r"\bworr(y|ied)\b", r"\bbad\s+news\b",
        r"\blife[-\s]threatening\b", r"\bdangerous\b", r"\bchances?\b", r"\bwill\s+i\b", r"\bprognos",
    ),
    "treatment": _any(
        r"\btreat", r"\bsurg(ery|eries|ical|eon)", r"\boperat(e|ion|ions)\b", r"\bchemo", r"\bradiation\b",
        r"\bradiotherap", r"\btherap(y|ies)\b", r"\bremov(e|ed|al)\b", r"\bbiops", r"\bshould\s+i\b",
        r"\bwhat\s+(do|should|can)\s+i\s+do\b", r"\b(do|will)\s+i\s+need\b", r"\bneeds?\s+to\s+do\b",
        r"\bnext\s+steps?\b", r"\bsecond\s+opinion", r"\bdiet\b", r"\bexercis", r"\bfix\b",
    ),
    "diagnosis": _any(
        r"\bdiagnos", r"\b(do|have|could|might|would|did)\s+i\s+(have|got|get|be)\b", r"\bhave\s+i\s+got\b",
        r"\bwhat('?s|\s+is)\s+wrong\b", r"\bwhat\s+do\s+i\s+(actually\s+)?have\b",
        r"\b(disease|illness|condition|disorder|syndrome|infection)s?\b", r"\bam\s+i\s+(sick|ill|ok|okay|fine|healthy|alright|all\s+right)\b",
        r"\b(pneumonia|stroke|sclerosis|appendicitis|tuberculosis|TB|aneurysm|alzheimer'?s?|dementia|cysts?|"
        r"bleed(ing)?|ha?emorrhage|embolism|clot|covid|diabetes|heart\s+attack)\b",
        r"\b(ab)?normal\b", r"\bfailing\b", r"\bwhy\s+i\s+(feel|have|am)\b", r"\bheadaches?\b", r"\btired\b",
    ),
    "other_medical": _any(
        r"\bcaus(e|ed|es|ing)\b", r"\b(hereditary|genetic|inherit\w*)\b", r"\bmy\s+(kids|children|family)\b",
        r"\bpregnan", r"\b(contagious|infectious)\b", r"\b(radiologist|doctor|physician|nurse)\b.{0,30}\b(miss|wrong|mistake)",
        r"\bsafe\s+to\b", r"\bcan\s+i\s+(still\s+)?(drive|fly|work|travel|eat|drink|exercise)\b",
        r"\b(is|are)\s+my\s+\w+\s+(ok|okay|fine|healthy|alright)\b", r"\bblood\s+tests?\b", r"\bresults?\b",
        r"\b(cost|price|pay|insurance|bill(ed|ing)?)\b", r"\bappointments?\b",
    ),
}  # fmt: skip
KINDS = tuple(PATTERNS)  # precedence order

_DOCTOR = (
    "That is a good question for your doctor, who knows your history and all of your results. "
    "This tool can only describe what the image shows, such as the kind of scan, the body part or the view; "
    "it cannot tell you what the image means for your health."
)
REFERRALS: dict[str, str] = {
    "self_harm": (
        "It sounds like you are going through something very hard, and you deserve support right now. "
        "Please talk to someone: call your local emergency number (for example 112 in Europe, 911 in the US, "
        "999 in the UK) or a crisis line, or tell a member of staff here. You do not have to face this alone."
    ),
    "urgency": (
        "If you feel unwell now or think this may be an emergency, call your local emergency number or go to "
        "the nearest emergency department. This tool cannot judge how urgent anything is."
    ),
    "prompt_injection": (
        "I cannot change how I work. I can answer simple questions about what the image shows, such as the "
        "kind of scan, the body part or the view. Anything else is for your doctor."
    ),
    "medication": (
        "Questions about medicines and doses are for your doctor or pharmacist, who know your history. "
        "Please do not change any medicine without talking to them."
    ),
    "cancer": _DOCTOR,
    "prognosis": _DOCTOR,
    "treatment": _DOCTOR,
    "diagnosis": _DOCTOR,
    "other_medical": _DOCTOR,
    MIXED_SCRIPT: (
        "This tool only understands questions written in English letters. Please type your question again "
        "in plain English, or ask your doctor or the clinic staff."
    ),
    "unlike_training": (
        "I can only answer simple questions about what this image shows, such as the kind of scan, the body "
        "part or the view. Please ask your doctor or the clinic staff about anything else."
    ),
}


def match_kind(question: str) -> tuple[str, str] | None:
    """(kind, matched text) of the first kind in KINDS whose pattern occurs in `question` (its NFKC form or
    its de-leeted copy, medvqa/guard/text.py); else (MIXED_SCRIPT, script) when it mixes Latin letters with
    another script's (the app is English-only); else None."""
    texts = variants(question)
    for kind in KINDS:
        for text in texts:
            found = PATTERNS[kind].search(text)
            if found:
                return kind, found.group(0)
    other = foreign_script(question)
    return (MIXED_SCRIPT, f"Latin letters mixed with {other.title()} ones") if other else None
