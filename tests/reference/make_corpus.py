#!/usr/bin/python3
"""Hard strings for the tokenizer comparison against Hugging Face's Rust tokenizers.

    make_corpus.py --out corpus.jsonl [--tokenizer DIR ...]
    make_corpus.py --bench-bytes 20000000 --out bench.jsonl

The first form writes >= 2,000 lines {"text": ...}: many scripts, emoji (ZWJ, skin tones, flags,
keycaps), combining marks, every kind of whitespace (tabs, CR LF, runs, NBSP, ideographic space,
zero-width characters, line/paragraph separators), long digit runs, code, URLs, contractions and
other pre-tokenizer edge cases, random code points, the empty string and 100 KB strings. With
--tokenizer DIR (a folder with tokenizer.json), that tokenizer's added tokens (special or not) are
embedded in text in many positions, whole and cut.

The second form writes natural-looking multilingual lines (a few hundred bytes to a few KB, about
60% Latin-script, the rest CJK, Cyrillic, Arabic, Devanagari, ..., code and numbers) totalling
about N bytes of text: the speed bench's input.

Deterministic: a fixed seed and only the standard library (Debian's /usr/bin/python3). Lone
surrogates cannot appear in UTF-8 JSON, so there are none.
"""
import argparse
import json
import os
import random
import sys

SEED = 20240611

# A few sentences per language: real text in each script, the seed material for everything below.
SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "I'll tell you what's going on: they've been working since 9 a.m. and they're tired.",
        "Fine-tuning is only as good as its tokens; one differing id and a model learns the wrong text.",
        "She said, \"Don't worry—it's fine.\" Then she left (quietly).",
        "In 1969, Apollo 11 landed on the Moon; 600,000,000 people watched it live.",
    ],
    "de": ["Größenwahn ist keine Lösung, aber Übermut tut selten gut. Straße, Maß, Fuß.",
           "Donaudampfschifffahrtsgesellschaftskapitän und Rindfleischetikettierungsüberwachung."],
    "fr": ["L'été dernier, nous sommes allés à la plage où l'eau était très froide.",
           "Qu'est-ce que c'est ? « Bonjour », dit-il. Œuvre, cœur, naïve, Noël."],
    "es": ["¿Dónde está la biblioteca? ¡Qué día más bonito! El niño comió piña."],
    "pt": ["Não há razão para preocupação; a ação começa às três horas."],
    "pl": ["Zażółć gęślą jaźń. Chrząszcz brzmi w trzcinie w Szczebrzeszynie."],
    "tr": ["İstanbul'da ılık bir gün; IĞDIR ve ığdır aynı şehir değil mi?"],
    "vi": ["Tiếng Việt có nhiều dấu: người, được, những, thế giới, Hà Nội."],
    "ru": ["Съешь же ещё этих мягких французских булок, да выпей чаю.",
           "Москва — столица России; в 2023 году там жили 13 миллионов человек."],
    "uk": ["Гей, хлопці, не вспію — на ґанку ваш шифр є їжаком."],
    "el": ["Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Σίσυφος, ΣΊΣΥΦΟΣ, σοφός."],
    "zh": ["我能吞下玻璃而不伤身体。", "机器学习模型的分词器必须与参考实现完全一致，否则训练数据就会出错。",
           "北京是中华人民共和国的首都，人口约两千一百万。"],
    "zh_tw": ["這是一個繁體中文的句子，包含標點符號：「你好」、『世界』。"],
    "ja": ["私はガラスを食べられます。それは私を傷つけません。",
           "東京スカイツリーは高さ634メートルで、２０１２年に開業しました。ｶﾀｶﾅ"],
    "ko": ["나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.",
           "한국어 형태소 분석은 어렵습니다; 띄어쓰기도 중요해요!"],
    "ar": ["أستطيع أكل الزجاج و هذا لا يؤلمني.", "مرحبا بالعالم! اللغة العربية جميلة جداً، أليس كذلك؟",
           "السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ وَبَرَكَاتُهُ"],
    "fa": ["من می‌توانم بدون آسیب دیدن شیشه بخورم. ۱۲۳۴۵۶۷۸۹۰"],
    "he": ["אני יכול לאכול זכוכית וזה לא מזיק לי.", "שָׁלוֹם עֲלֵיכֶם, מַה שְּׁלוֹמְךָ?"],
    "hi": ["मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती।",
           "भारत की राजधानी नई दिल्ली है; २०२४ में चुनाव हुए।"],
    "bn": ["আমি কাঁচ খেতে পারি, তাতে আমার কোনো ক্ষতি হয় না।"],
    "ta": ["நான் கண்ணாடி சாப்பிடுவேன், அதனால் எனக்கு ஒரு கேடும் வராது."],
    "th": ["ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ ทำให้การตัดคำเป็นเรื่องยาก"],
    "ka": ["მინას ვჭამ და არა მტკივა."],
    "hy": ["Կրնամ ապակի ուտել և ինծի անհանգիստ չըներ։"],
    "am": ["ብርጭቆ መብላት እችላለሁ፣ እና አይጎዳኝም።"],
    "my": ["ကျွန်တော် ကျွန်မ မှန်စားနိုင်တယ်။"],
    "km": ["ខ្ញុំអាចញុំកញ្ចក់បាន ដោយគ្មានបញ្ហា"],
    "si": ["මට වීදුරු කෑමට හැකියි. එයින් මට කිසි හානියක් සිදු නොවේ."],
    "ml": ["എനിക്ക് ഗ്ലാസ് തിന്നാം. അതെന്നെ വേദനിപ്പിക്കില്ല."],
    "yi": ["איך קען עסן גלאָז און עס טוט מיר נישט װײ."],
    "bo": ["ཤེལ་སྒོ་ཟ་ནས་ང་ན་གི་མ་རེད།"],
    "mn": ["Би шил идэж чадна, надад хортой биш."],
}

WORDS = {lang: [w for s in ss for w in s.split()] for lang, ss in SENTENCES.items()}

CJK_LANGS = ("zh", "zh_tw", "ja", "th", "km", "my", "bo")

EMOJI = [
    "😀", "😂", "🥲", "🤖", "🚀", "❤️", "❤", "🇺🇸", "🇯🇵", "🇩🇪", "🏳️‍🌈", "🏴‍☠️",
    "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🧑🏽‍💻", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "🙋‍♀️", "🙋🏿‍♂️",
    "1️⃣", "#️⃣", "*️⃣", "©️", "™️", "☺️", "✌🏽", "🫶🏾", "🧔🏻‍♀️", "👁️‍🗨️", "🐻‍❄️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "🤷‍♂️", "🧑‍🤝‍🧑", "👩🏻‍🤝‍👨🏿", "💯", "🔥", "✅", "⚠️", "🈚", "🀄", "🃏",
]
SKIN = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
ZWJ, VS16 = "\u200d", "\ufe0f"

WHITESPACE = [
    " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n",
    "\n ", " \t ", "\u00a0", "\u00a0\u00a0", "\u3000", "\u2002", "\u2003", "\u2009", "\u200a",
    "\u202f", "\u205f", "\u1680", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u200b",
    "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e", " " * 16, "\n" * 8, "\t" * 8,
    " \u00a0 ", "\u3000\u3000", "\r\r\n", "\n\r",
]

COMBINING = ["\u0301", "\u0300", "\u0308", "\u0302", "\u0303", "\u0327", "\u0328", "\u030a",
             "\u0323", "\u0331", "\u0345", "\u20dd", "\u0489", "\u0670", "\u05b7", "\u093c"]

CODE = [
    'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n'
    '    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib(90))\n',
    '#include <vector>\n\ntemplate <typename T>\nT sum(const std::vector<T>& v) {\n  T s{};\n'
    '  for (const auto& x : v) s += x;  // accumulate\n  return s;\n}\n',
    'const f = async (url) => {\n\tconst r = await fetch(url, {method: "GET"});\n'
    '\treturn r.ok ? r.json() : null;\n};\nconsole.log(`${1 + 2} == 3`);\n',
    'fn main() {\n    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();\n'
    '    println!("{:?}", v);\n}\n',
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tch := make(chan int, 3)\n\tch <- 42\n'
    '\tfmt.Println(<-ch)\n}\n',
    "SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id\n"
    "WHERE o.created_at >= '2024-01-01' GROUP BY u.id HAVING n > 5 ORDER BY n DESC;\n",
    '<!DOCTYPE html>\n<html lang="en">\n  <body>\n    <div class="a&amp;b" id=\'x\'>'
    '&lt;tag&gt; &nbsp;</div>\n  </body>\n</html>\n',
    '{"name": "tune", "version": "0.1.0", "list": [1, 2.5, -3e10, null, true], "nested": {"k": "v"}}',
    '#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  echo "${f%.txt}" | tr \'a-z\' \'A-Z\' >> out.log 2>&1\ndone\n',
    "\\begin{equation}\n  \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}\n",
    r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@\w+\.\w{2,}$",
    "    if (x != nullptr && *x >= 0x7fffffff) { return -1; }   \n\n\n\t\t}\n",
    "class Foo(Bar):\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n"
    "        self._x = [i ** 2 for i in range(10) if i % 2 == 0]\n",
    "x = 1;y=2;;z=x+++y---1;a[i]=b<<2>>1|c&d^~e;",
    "    \n    \n        pass\n",
]

URLS = [
    "https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct/blob/main/tokenizer.json",
    "http://example.com/path/to/page?query=a%20b&x=1#fragment",
    "ftp://user:pass@ftp.example.org:2121/pub/file.tar.gz",
    "https://ja.wikipedia.org/wiki/東京都", "https://пример.рф/страница?q=тест",
    "mailto:someone.name+tag@sub.example.co.uk", "www.google.com/search?q=tokenizer+bpe",
    "git@github.com:huggingface/tokenizers.git", "/usr/local/lib/python3.11/site-packages/",
    "C:\\Users\\Admin\\Documents\\file (1).txt", "https://x.co/a_b-c~d.e!f*g'h(i)j;k:l@m&n=o+p$q,r",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
]

CONTRACTIONS = [
    "'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'Ll",
    "'d", "'D", "’s", "’ll", "n't", "N'T", "'", "''", "'''", "' s", " 's", "'s'", "'ss", "'sa",
]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "–", "«", "»", "“", "”", "‘", "’",
                                                      "¿", "¡", "·", "•", "§", "¶", "†", "‰", "′",
                                                      "、", "。", "，", "！", "？", "：", "；", "「",
                                                      "」", "《", "》", "…", "⸻"]

NORMALIZATION = [
    "ﬁ ﬂ ﬀ ﬃ", "Ａ Ｂ Ｃ ａｂｃ １２３", "x² y³ H₂O", "Ⅻ ⅻ ½ ¾ ⅞", "Å Å Å", "ẞ ß SS",
    "İ i̇ ı I", "ΣΑΣ σας", "ǅ ǆ Ǆ", "㍻ ㌀ ㎏ ㎞", "① ⑩ ⑳", "ℌ ℍ ℕ ℙ", "ｶﾞｷﾞｸﾞ", "ﾊﾟﾋﾟ",
    "e\u0301 é \u00e9", "n\u0303 ñ", "\u1100\u1161\u11a8 각", "Ω Ω", "K K", "µ μ",
    "\u2126\u212b\u212a", "A\u030a\u0301", "ᾼ ᾳ ΐ", "…‥", "™ ℠ ℡", "¼ ⁄ ∕",
]

# Rare and 4-byte characters: byte-fallback and unknown-token paths.
RARE = ["𠀀", "𠜎", "𪚥", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "𓀀𓁐𓂀", "𐌰𐌱𐌲", "ᚠᚢᚦᚨᚱᚲ", "ꙮ", "𒀱", "🜁🜂",
        "\U000f0000", "\U0010fffd", "\ue000", "\uf8ff", "\ufffd", "\ufffe", "\uffff", "\u0000",
        "\u0001\u0002\u001f", "\u007f", "\u0080\u009f", "\u00ad", "\u034f", "\u061c", "\u200e\u200f",
        "\u202a\u202b\u202c\u202d\u202e", "\u2066\u2067\u2068\u2069", "\U000e0001\U000e0041"]

# Code point ranges for random strings (assigned blocks, no surrogates).
RANGES = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x530, 0x58f),
          (0x590, 0x5ff), (0x600, 0x6ff), (0x900, 0x97f), (0x980, 0x9ff), (0xe00, 0xe7f),
          (0x10a0, 0x10ff), (0x1100, 0x11ff), (0x1e00, 0x1fff), (0x2000, 0x206f), (0x2190, 0x22ff),
          (0x2500, 0x27bf), (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xf900, 0xfaff),
          (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1f300, 0x1faff), (0x20000, 0x2a6df),
          (0xe0000, 0xe007f)]


def random_codepoints(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(RANGES)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def sentence(rng, lang=None):
    lang = lang or rng.choice(list(SENTENCES))
    return rng.choice(SENTENCES[lang])


def word_salad(rng, n, langs=None):
    langs = langs or list(WORDS)
    parts = []
    for _ in range(n):
        lang = rng.choice(langs)
        parts.append(rng.choice(WORDS[lang]))
        r = rng.random()
        parts.append(" " if r < 0.8 else rng.choice(WHITESPACE) if r < 0.9 else
                     rng.choice(PUNCT) if r < 0.97 else "")
    return "".join(parts)


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def emoji_seq(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(EMOJI)
    if r < 0.5:
        return rng.choice(["👍", "👋", "🧑", "👩", "👨", "🤝", "✋"]) + rng.choice(SKIN)
    if r < 0.7:  # built ZWJ chains, sometimes broken
        n = rng.randint(2, 5)
        base = [rng.choice(["👨", "👩", "👧", "👦", "🧑", "❤", "💋", "🔥", "🦰"]) for _ in range(n)]
        sep = ZWJ if rng.random() < 0.8 else ZWJ + ZWJ
        return sep.join(b + (rng.choice(SKIN) if rng.random() < 0.3 else "") for b in base)
    if r < 0.85:  # regional indicators: flags, odd counts
        return "".join(chr(0x1F1E6 + rng.randint(0, 25)) for _ in range(rng.randint(1, 5)))
    return rng.choice("0123456789#*") + VS16 + "\u20e3"


def hard_strings(rng):
    """Every category once or many times; returns a list of strings."""
    out = []
    add = out.append

    # Edge cases and single characters.
    for s in ["", " ", "  ", "\n", "\t", "\r\n", "a", "A", "0", "'", "''", ".", "\u00a0", "\u3000",
              "\u200b", "\ufeff", "\ufeffHello", "▁", "▁▁hello▁", "Ġ", "Ċ", "ĠĠ", "<0x0A>", "<0xFF>",
              "<unk>", "<s>", "</s>", "<pad>", "<|endoftext|>x", "\\n", "\\u0000", " hello", "hello ",
              "  hello  ", "\nhello\n", "Hello", "HELLO", "hElLo", "hello world", "Hello World!"]:
        add(s)
    for s in RARE + NORMALIZATION + PUNCT + CONTRACTIONS:
        add(s)
    for ch in PUNCT:
        add(ch * rng.randint(2, 40))

    # Natural sentences per language, alone and perturbed.
    for lang, ss in SENTENCES.items():
        for s in ss:
            add(s)
            add(" " + s)
            add(s + "\n")
            add(s.upper())
            add(s.lower())
            add(s.replace(" ", "  "))
            add(s.replace(" ", "\u00a0"))
            add(s.replace(" ", "\t"))
            add(s.replace(" ", ""))
            add(s + " " + rng.choice(EMOJI))
            add("\n\n".join([s, sentence(rng), sentence(rng)]))
    for _ in range(250):
        add(word_salad(rng, rng.randint(3, 60)))
    for _ in range(60):
        lang = rng.choice(CJK_LANGS)
        add(word_salad(rng, rng.randint(5, 40), [lang, lang, "en"]))

    # Emoji.
    for e in EMOJI:
        add(e)
        add("I " + e + " it" + e + e)
    for _ in range(150):
        add("".join(emoji_seq(rng) + rng.choice(["", "", " ", "\n", "a", "。", ZWJ, VS16])
                    for _ in range(rng.randint(1, 8))))

    # Combining marks: stacked, on every script, on spaces, at the start.
    for _ in range(120):
        base = rng.choice(["a", "e", "o", "n", "A", " ", "\n", "1", "ا", "ב", "क", "ก", "한", "я",
                           "中", "😀", ""])
        marks = "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 12)))
        add(word_salad(rng, 2) + base + marks + word_salad(rng, 2))
    add("Z̴̡̢̛̗̘̙̜̝̞̟̠̊̋̌̍̎̏̐̑̒̓̔̽̾̿̀́͂̓̈́͆͊͋͌ͅ͏͎͓͔͕͖͙͚͐͑͒͗͛ͣͤͥͦͧͨͩͪͫͬͭͮͯ͘͜͟͢͝͞͠͡a̸l̷g̶o̵")

    # Whitespace of every kind, alone, in runs, between words and at the ends.
    for ws in WHITESPACE:
        add(ws)
        add("a" + ws + "b")
        add(ws + "word")
        add("word" + ws)
        add("x" + ws * 3 + "y" + ws)
        add("中" + ws + "文")
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(WHITESPACE) * rng.randint(1, 4))
            if rng.random() < 0.7:
                parts.append(rng.choice(WORDS[rng.choice(list(WORDS))]))
        add("".join(parts))
    for n in [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 257]:
        add(" " * n)
        add("\n" * n)
        add("a" + " " * n + "b")
        add(" " * n + "\n" * (n % 5 + 1) + " " * n)
    add("  \n\n  ")
    add("\n  \n\t\n  ")

    # Digits: long runs, groupings, other digit systems, mixed with letters.
    for n in [1, 2, 3, 4, 5, 6, 7, 9, 10, 16, 32, 50, 99, 100, 256, 1000]:
        add(digits(rng, n))
    for _ in range(100):
        r = rng.random()
        if r < 0.3:
            add(f"{rng.randint(0, 10**12):,}".replace(",", rng.choice([",", ".", " ", "\u202f", "'"])))
        elif r < 0.5:
            add(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 12)}f}")
        elif r < 0.6:
            add(f"{rng.uniform(-1, 1):e}")
        elif r < 0.7:
            add("".join(chr(rng.choice([0x660, 0x6f0, 0x966, 0xff10, 0x9e6, 0xe50, 0x1d7ce]) +
                            rng.randint(0, 9)) for _ in range(rng.randint(1, 20))))
        elif r < 0.85:
            add("v" + digits(rng, 2) + "." + digits(rng, 3) + "abc" + digits(rng, 7) + "x" +
                digits(rng, 1))
        else:
            add(f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z +{digits(rng, 11)}")

    # Code, whole and in pieces, with indentation variants.
    for c in CODE:
        add(c)
        add(c.replace("    ", "\t"))
        add(c.replace("\n", "\r\n"))
        add("```\n" + c + "```")
        lines = c.split("\n")
        for _ in range(3):
            i = rng.randint(0, len(lines) - 1)
            add("\n".join(lines[i:i + rng.randint(1, 4)]))

    # URLs, paths, e-mail.
    for u in URLS:
        add(u)
        add("See " + u + ", then reply.")
        add("(" + u + ")")
    for _ in range(40):
        host = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 12)))
        add(f"https://{host}.{rng.choice(['com', 'org', 'io', 'de', 'co.jp'])}/"
            f"{word_salad(rng, 2, ['en']).strip().replace(' ', '/')}?id={digits(rng, 6)}")

    # Contractions and apostrophe edge cases in context.
    for c in CONTRACTIONS:
        for tmpl in ["I{0} go", "WE{0} GO", "it{0}", "{0}{0}", " {0} ", "x{0}\n", "1{0}2", "中{0}"]:
            add(tmpl.format(c))
    for s in ["don't", "DON'T", "Don’t", "y'all'd've", "rock 'n' roll", "'tis", "o'clock",
              "l'homme", "I'M", "YOU'RE", "he'LL", "'LL", "x'LL'", "''''", "'s's's"]:
        add(s)
        add(s + " " + s)

    # Random code points, short and long.
    for _ in range(150):
        add(random_codepoints(rng, rng.randint(1, 60)))
    for _ in range(40):
        add(word_salad(rng, 3) + rng.choice(RARE) + rng.choice(RARE) + word_salad(rng, 3))

    # Mixed adversarial: everything glued together without spaces.
    for _ in range(120):
        pieces = [sentence(rng), rng.choice(EMOJI), digits(rng, rng.randint(1, 30)),
                  rng.choice(WHITESPACE), rng.choice(URLS), rng.choice(PUNCT) * 3,
                  rng.choice(CONTRACTIONS), rng.choice(NORMALIZATION), rng.choice(RARE),
                  rng.choice(CODE)[:rng.randint(1, 80)]]
        rng.shuffle(pieces)
        add(rng.choice(["", " ", "\n"]).join(pieces[:rng.randint(2, len(pieces))]))

    # Very long strings (100 KB).
    kb100 = 100_000
    add(repeat_to(" ".join(SENTENCES["en"]) + " ", kb100))
    add(repeat_to("".join(SENTENCES["zh"]), kb100))
    add(repeat_to(word_salad(rng, 400) + "\n", kb100))
    add("a" * kb100)
    add(" " * kb100)
    add("\n" * (kb100 // 2) + "x")
    add(digits(rng, kb100))
    add(repeat_to("👨‍👩‍👧‍👦", kb100))
    add(repeat_to(CODE[0] + CODE[1], kb100))
    add(random_codepoints(rng, kb100 // 3))
    return out


def repeat_to(s, n_bytes):
    """s repeated until its UTF-8 form is at least n_bytes long (whole characters only)."""
    b = len(s.encode("utf-8"))
    return s * (n_bytes // b + 1)


def special_strings(rng, tokenizer_dir):
    """Strings embedding the tokenizer's added tokens: whole, adjacent, spaced, cut, cased."""
    with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        added = [t["content"] for t in json.load(f).get("added_tokens", [])]
    if not added:
        return []
    # The first tokens (BOS/EOS/chat markers) matter most; sample the rest.
    chosen = added[:12] + rng.sample(added[12:], min(28, max(0, len(added) - 12)))
    out = []
    for t in chosen:
        out.append(t)
        out.append(t + t)
        out.append(" " + t + " ")
        out.append("Hello" + t + "world")
        out.append("Hello " + t + " world\n" + t)
        out.append(t + "\n\n" + sentence(rng))
        out.append(sentence(rng) + t)
        out.append(t[:-1])  # cut: must not match
        out.append(t[1:])
        out.append(t.upper() if t.upper() != t else t.lower())
    for _ in range(40):
        parts = []
        for _ in range(rng.randint(2, 10)):
            parts.append(rng.choice(chosen) if rng.random() < 0.5 else
                         rng.choice([sentence(rng), rng.choice(WHITESPACE), rng.choice(EMOJI),
                                     digits(rng, 5), ""]))
        out.append("".join(parts))
    # A chat-shaped string with the tokenizer's markers.
    out.append("".join(added[:6]) + "user\nHi!" + "".join(added[:3]) + "assistant\n")
    return out


def bench_lines(rng, n_bytes):
    """Natural-looking multilingual lines totalling about n_bytes of UTF-8 text."""
    latin = ["en", "en", "en", "en", "de", "fr", "es", "pt", "pl", "tr", "vi"]
    other = [lang for lang in SENTENCES if lang not in latin]
    total = 0
    while total < n_bytes:
        r = rng.random()
        if r < 0.6:
            lang = rng.choice(latin)
        elif r < 0.9:
            lang = rng.choice(other)
        else:
            lang = None
        if lang is None:
            text = rng.choice(CODE) if rng.random() < 0.7 else word_salad(rng, rng.randint(20, 200))
        else:
            n = rng.randint(1, 12)
            parts = []
            for _ in range(n):
                s = sentence(rng, lang)
                if rng.random() < 0.5:  # reshuffle words so lines are not all repeats
                    words = s.split(" ")
                    rng.shuffle(words)
                    s = " ".join(words)
                if rng.random() < 0.1:
                    s += " " + str(rng.randint(0, 10**rng.randint(1, 9)))
                parts.append(s)
            text = rng.choice([" ", " ", "\n", "\n\n"]).join(parts)
        total += len(text.encode("utf-8"))
        yield text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--tokenizer", action="append", default=[],
                   help="a tokenizer folder whose added tokens to embed (repeatable)")
    p.add_argument("--bench-bytes", type=int, default=0,
                   help="write the bench corpus of about this many bytes instead")
    args = p.parse_args()

    rng = random.Random(SEED)
    if args.bench_bytes:
        lines = list(bench_lines(rng, args.bench_bytes))
    else:
        lines = hard_strings(rng)
        for d in args.tokenizer:
            lines += special_strings(random.Random(SEED + len(lines)), d)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for s in lines:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    print(f"make_corpus: {len(lines)} strings, "
          f"{sum(len(s.encode('utf-8')) for s in lines) / 1e6:.1f} MB -> {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
