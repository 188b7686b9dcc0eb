"""The official VQA answer normalisation (VQAv2, OK-VQA evaluation), rule for rule.

`normalize_vqa_answer` applies, in order, what the official evaluation script (vqaEval.py of
the VQA API, as copied into LAVIS) applies to a predicted answer:

1. newlines and tabs become spaces; surrounding whitespace is stripped;
2. punctuation (`PUNCTUATION`): each mark is deleted when it touches a space (" ," or ", ")
   or when the text holds a digit-comma-digit ("1,000"), else replaced by a space; then every
   period not followed by a digit is deleted ("3.5" keeps its point; the script passes
   re.UNICODE where `sub` takes its count, so at most 32 periods go: kept here);
3. lowercase, split into words; number words "none", "zero" .. "ten" become digits; the
   articles "a", "an", "the" are dropped; contractions written without their apostrophe
   ("dont", "isnt") get it back (`CONTRACTIONS`); words joined by single spaces.

Unlike the script, which only strips the punctuation of the human answers (VQAv2's were already
normalised when collected) and leaves them untouched when all ten agree, both sides get the
whole normalisation here, so raw answers of a custom dataset ("Two", "the dog") compare as the
published numbers assume. On VQAv2's annotations the two agree.
"""

from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<")
PUNCTUATION += ("@", "`", ",", "?", "!")
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The script's pattern, "(?!<=\d)" included: a lookahead (not a lookbehind) that never fails
# before a period, so in effect "a period not followed by a digit".
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")


# The script's table, entry for entry (its oddities included: "somebody'd" -> "somebodyd";
# the capitalised keys never match, as the words are lowercased first).
_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS = dict(pair.split("=") for pair in _CONTRACTION_PAIRS.split())


def strip_punctuation(text: str) -> str:
    """Rule 2 of the module docstring."""
    out = text
    touching_or_number = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if touching_or_number or (mark + " " in text or " " + mark in text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=re.UNICODE)


def digits_articles_contractions(text: str) -> str:
    """Rule 3 of the module docstring."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str) -> str:
    """`text` normalised as the official VQA evaluation normalises a predicted answer."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return digits_articles_contractions(strip_punctuation(text))
